"""MoMo Disbursement on the wire: transfer and refund bodies and paths (momo.md §5).

Pure functions, no I/O. A transfer is a request-to-pay with ``payee`` instead of ``payer``; a
refund names the request-to-pay it refunds by its ``X-Reference-Id`` (``referenceIdToRefund``)
and has no party (MoMo pays the original payer back).
"""

from __future__ import annotations

from typing import Any, Final

from lipwa.providers.momo.wire import payment_body

TRANSFER_PATH: Final = "/disbursement/v1_0/transfer"
REFUND_PATH: Final = "/disbursement/v1_0/refund"


def transfer_body(
    *,
    amount: str,
    currency: str,
    msisdn: str,
    external_id: str,
    payer_message: str,
    payee_note: str,
) -> dict[str, Any]:
    return payment_body(
        amount=amount,
        currency=currency,
        external_id=external_id,
        payer_message=payer_message,
        payee_note=payee_note,
        party="payee",
        msisdn=msisdn,
    )


def refund_body(
    *,
    amount: str,
    currency: str,
    external_id: str,
    reference_id_to_refund: str,
    payer_message: str,
    payee_note: str,
) -> dict[str, Any]:
    body = payment_body(
        amount=amount,
        currency=currency,
        external_id=external_id,
        payer_message=payer_message,
        payee_note=payee_note,
    )
    body["referenceIdToRefund"] = reference_id_to_refund
    return body
