"""MoMo Disbursement on the wire: transfer and refund bodies and paths (momo.md §5).

Pure functions, no I/O. A transfer is a request-to-pay with ``payee`` instead of ``payer``; a
refund names the request-to-pay it refunds by its ``X-Reference-Id`` (``referenceIdToRefund``)
and has no party (MoMo pays the original payer back).
"""

from __future__ import annotations

from typing import Any, Final

from lipwa.providers.momo.wire import clean_text, digits

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
    return {
        "amount": str(amount),
        "currency": currency,
        "externalId": external_id,
        "payee": {"partyIdType": "MSISDN", "partyId": digits(msisdn)},
        "payerMessage": clean_text(payer_message),
        "payeeNote": clean_text(payee_note),
    }


def refund_body(
    *,
    amount: str,
    currency: str,
    external_id: str,
    reference_id_to_refund: str,
    payer_message: str,
    payee_note: str,
) -> dict[str, Any]:
    return {
        "amount": str(amount),
        "currency": currency,
        "externalId": external_id,
        "payerMessage": clean_text(payer_message),
        "payeeNote": clean_text(payee_note),
        "referenceIdToRefund": reference_id_to_refund,
    }
