"""MoMo Open API wire format: request bodies, error shapes, status results.

Pure functions, no I/O. Facts: ../shared/providers/momo.md §3, §4, §6.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from lipwa.domain.codes import FAILED, SUCCEEDED, momo_reason_parts, momo_result
from lipwa.providers.base import ProviderReport, ReportState
from lipwa.providers.scrub import scrub as _scrub
from lipwa.providers.values import decimal as _decimal
from lipwa.providers.values import text as _text

TOKEN_PATH: Final = "/{product}/token/"
REQUEST_TO_PAY_PATH: Final = "/collection/v1_0/requesttopay"

TEXT_MAX: Final = 160  # payerMessage / payeeNote
ERROR_MESSAGE_MAX: Final = 300
_APOSTROPHES: Final = str.maketrans("", "", "'\u2018\u2019`")

# Sync refusals on the POST that are final: the request was not created.
# (INTERNAL_PROCESSING_ERROR and SERVICE_UNAVAILABLE are not: the same reference is retried.)
DEFINITE_REFUSALS: Final = frozenset(
    {
        "NOT_ALLOWED",
        "NOT_ALLOWED_TARGET_ENVIRONMENT",
        "INVALID_CALLBACK_URL_HOST",
        "INVALID_CURRENCY",
        "PAYER_NOT_FOUND",
        "PAYEE_NOT_FOUND",
        "PAYEE_NOT_ALLOWED_TO_RECEIVE",
        "NOT_ENOUGH_FUNDS",
        "PAYER_LIMIT_REACHED",
        "VALIDATION_ERROR",
    }
)
RETRYABLE_CODES: Final = frozenset({"INTERNAL_PROCESSING_ERROR", "SERVICE_UNAVAILABLE"})
ALREADY_EXISTS: Final = "RESOURCE_ALREADY_EXIST"
NOT_FOUND: Final = "RESOURCE_NOT_FOUND"


def clean_text(text: str) -> str:
    """Message text MoMo accepts: no apostrophes, one line, at most 160 characters."""
    return " ".join(text.translate(_APOSTROPHES).split())[:TEXT_MAX]


def payment_body(
    *,
    amount: str,
    currency: str,
    external_id: str,
    payer_message: str,
    payee_note: str,
    party: str | None = None,
    msisdn: str = "",
) -> dict[str, Any]:
    """The fields request-to-pay, transfer and refund share, in MoMo's documented order;
    ``party`` ("payer" or "payee") adds the MSISDN party (a refund has none)."""
    body: dict[str, Any] = {"amount": str(amount), "currency": currency, "externalId": external_id}
    if party is not None:
        body[party] = {"partyIdType": "MSISDN", "partyId": digits(msisdn)}
    body["payerMessage"] = clean_text(payer_message)
    body["payeeNote"] = clean_text(payee_note)
    return body


def request_to_pay_body(
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
        party="payer",
        msisdn=msisdn,
    )


def digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def json_body(content: bytes) -> Any:
    """The parsed body, or None when it is empty or not JSON."""
    try:
        return json.loads(content)
    except ValueError:
        return None


@dataclass(frozen=True)
class MomoError:
    """Any of MoMo's error shapes: ``{code, message}``, ``{error}``, ``{statusCode, message}``."""

    code: str | None
    message: str | None


def parse_error(body: object) -> MomoError | None:
    if not isinstance(body, dict):
        return None
    code = body.get("code")
    if not isinstance(code, str):
        error = body.get("error")
        code = error if isinstance(error, str) else None
    message = body.get("message")
    message = message if isinstance(message, str) else None
    if code is None and message is None:
        return None
    return MomoError(code.strip() or None if code else None, message)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Cut ``text`` and replace any secret in it (providers echo tokens in some errors)."""
    return _scrub(text, secrets, ERROR_MESSAGE_MAX)


_STATES = {
    SUCCEEDED: ReportState.SUCCEEDED,
    FAILED: ReportState.FAILED,
}


def status_report(
    body: object, *, reference_id: str | None, require_receipt: bool
) -> ProviderReport | None:
    """A request-to-pay / transfer result (GET body or callback body) as a report.

    ``None`` when ``body`` has no ``status``. With ``require_receipt``, SUCCESSFUL without a
    ``financialTransactionId`` is reported PENDING (confirm by GET) instead of SUCCEEDED.
    """
    if not isinstance(body, dict):
        return None
    status = body.get("status")
    if not isinstance(status, str) or not status.strip():
        return None
    reason = body.get("reason")
    info = momo_result(status, reason)
    _, reason_message = momo_reason_parts(reason)
    receipt = _text(body.get("financialTransactionId"))
    state = _STATES.get(info.state, ReportState.PENDING)
    message = reason_message
    if state is ReportState.SUCCEEDED and require_receipt and receipt is None:
        state = ReportState.PENDING
        message = "SUCCESSFUL without financialTransactionId: confirm by status query"
    party = body.get("payer")
    if not isinstance(party, dict):
        party = body.get("payee")
    return ProviderReport(
        state=state,
        provider_ref=reference_id,
        raw_code=info.code,
        raw_message=message,
        failure_code=info.failure_code if state is ReportState.FAILED else None,
        receipt=receipt,
        amount=_decimal(body.get("amount")),
        phone=_msisdn(party),
        external_id=_text(body.get("externalId")),
    )


def _msisdn(party: object) -> str | None:
    if not isinstance(party, dict):
        return None
    kind = party.get("partyIdType")
    if kind is not None and (not isinstance(kind, str) or kind.upper() != "MSISDN"):
        return None
    text = _text(party.get("partyId"))
    return (digits(text) or None) if text else None
