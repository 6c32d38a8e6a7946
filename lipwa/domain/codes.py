"""The catalogue of provider result codes: what each raw code means, in one place.

Pure data and lookups, no I/O. Provider clients use it to turn a raw ``ResultCode`` /
``reason`` into a state and a normalised failure code; support staff read the same table
(``catalogue()``) as the error-code reference.

Sources: ../shared/providers/daraja.md §2.5, §2.8, §3, §4 and momo.md §6, §7.3.
Rules that are deliberate choices (not provider facts) are marked "decision".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lipwa.domain.states import FAILURE_CODES as _STATE_FAILURE_CODES

SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
PENDING: Final = "pending"

# The normalised failure codes a payment can carry (explained in states.FAILURE_CODES).
FAILURE_CODES: Final[frozenset[str]] = frozenset(_STATE_FAILURE_CODES)


@dataclass(frozen=True)
class CodeInfo:
    """One provider result code and what it means."""

    provider: str  # "mpesa" | "momo"
    code: str  # raw, as str
    state: str  # "succeeded" | "failed" | "pending"
    failure_code: str | None  # normalised, None unless state == "failed"
    explanation: str  # plain language for merchants and support
    # Which table the code belongs to, so the reference can tell an STK "17" from a B2C "17":
    # "stk", "b2c" (M-Pesa) or "status", "reason" (MoMo). Empty for codes not in the catalogue.
    api: str = ""


_Row = tuple[str, str, str | None, str]  # code, state, failure_code, explanation

# ----- M-Pesa: STK callback and STK query ResultCode (daraja.md §4) ----------------------------
_MPESA_STK: Final[tuple[_Row, ...]] = (
    ("0", SUCCEEDED, None, "The payer approved the prompt and the payment went through."),
    (
        "1",
        FAILED,
        "insufficient_funds",
        "The payer's M-Pesa balance is too low. They can top up and pay again.",
    ),
    ("2", FAILED, "limit_exceeded", "The amount is below M-Pesa's minimum (KES 1)."),
    ("3", FAILED, "limit_exceeded", "The amount is above M-Pesa's maximum for one transaction."),
    (
        "4",
        FAILED,
        "limit_exceeded",
        "The payment would take the payer over their daily M-Pesa limit.",
    ),
    (
        "8",
        FAILED,
        "limit_exceeded",
        "The payment would take the receiving account over its maximum balance.",
    ),
    (
        "17",
        FAILED,
        "duplicate_transaction",
        "M-Pesa blocked it as a repeat: the same amount to the same payer within about two "
        "minutes. Wait two minutes before asking again.",
    ),
    (
        "26",
        FAILED,
        "provider_error",
        "M-Pesa was too busy to process the request. A new attempt after ~30 s may work.",
    ),
    (
        "1001",
        FAILED,
        "subscriber_busy",
        "The payer already has an M-Pesa transaction in progress. Wait 1-3 minutes and retry.",
    ),
    ("1019", FAILED, "expired", "The prompt expired before it was completed."),
    (
        "1025",
        FAILED,
        "provider_error",
        "M-Pesa could not send the prompt (often a too-long prompt text; keep the account "
        "reference short).",
    ),
    ("1032", FAILED, "payer_declined", "The payer cancelled the prompt on their phone."),
    (
        "1036",
        FAILED,
        "payer_unreachable",
        "The prompt could not be delivered to the phone (SMSC acknowledgement timeout).",
    ),
    (
        "1037",
        FAILED,
        "payer_unreachable",
        "The payer's phone could not be reached, or they did not enter their PIN in time.",
    ),
    ("2001", FAILED, "wrong_pin", "The payer entered a wrong M-Pesa PIN."),
    (
        "2028",
        FAILED,
        "invalid_request",
        "The shortcode is not allowed this transaction type: check paybill vs till settings "
        "(TransactionType and PartyB).",
    ),
    (
        "2029",
        FAILED,
        "invalid_request",
        "Paybill/till type mismatch in the account settings (unconfirmed code).",
    ),
    (
        "8006",
        FAILED,
        "not_allowed",
        "The payer's M-Pesa PIN is locked; they must call Safaricom to unlock it.",
    ),
    ("9999", FAILED, "provider_error", "M-Pesa failed while sending the prompt."),
    ("4999", PENDING, None, "M-Pesa is still processing the transaction."),
    (
        "SFC_IC0003",
        FAILED,
        "invalid_request",
        "M-Pesa does not recognise the operator: wrong TransactionType/PartyB for this "
        "shortcode, or an unknown phone number.",
    ),
)

# ----- M-Pesa: B2C, reversal, transaction status and the secured-API gateway codes -----------
# (daraja.md §2.5, §2.8, §3 "Gateway-side result codes for secured APIs").
_MPESA_B2C: Final[tuple[_Row, ...]] = (
    ("0", SUCCEEDED, None, "The transaction was processed successfully."),
    (
        "1",
        FAILED,
        "insufficient_funds",
        "The business account (B2C utility account) does not have enough float.",
    ),
    ("2", FAILED, "limit_exceeded", "The amount is below M-Pesa's minimum for this payment."),
    ("3", FAILED, "limit_exceeded", "The amount is above M-Pesa's maximum for this payment."),
    ("4", FAILED, "limit_exceeded", "The payment exceeds a daily transfer limit."),
    (
        "8",
        FAILED,
        "limit_exceeded",
        "The recipient's M-Pesa account would exceed its maximum balance.",
    ),
    ("11", FAILED, "not_allowed", "The debit party is in an invalid state."),
    (
        "15",
        FAILED,
        "duplicate_transaction",
        "M-Pesa saw a repeat of an earlier request. A payout or refund answered so is not "
        "failed: Lipwa checks what became of the first request.",
    ),
    ("17", FAILED, "provider_error", "M-Pesa reported an internal failure."),
    (
        "18",
        FAILED,
        "not_allowed",
        "The initiator credentials failed M-Pesa's check (initiator name/password).",
    ),
    ("19", FAILED, "provider_error", "M-Pesa reported a message sequencing failure."),
    ("20", FAILED, "not_allowed", "M-Pesa could not resolve the initiator."),
    (
        "21",
        FAILED,
        "not_allowed",
        "The initiator is not allowed to act for this shortcode (missing role/permission).",
    ),
    ("22", FAILED, "not_allowed", "The initiator is not allowed to pay this receiver."),
    ("24", FAILED, "invalid_request", "Mandatory fields are missing from the request."),
    ("25", FAILED, "invalid_request", "The request parameters are invalid."),
    ("26", FAILED, "provider_unavailable", "M-Pesa is blocking traffic (system too busy)."),
    ("29", FAILED, "invalid_request", "Invalid command for this API."),
    (
        "2001",
        FAILED,
        "not_allowed",
        "The initiator information is invalid: check the initiator name, password and the "
        "security credential (passwords expire every 90 days).",
    ),
    ("2006", FAILED, "not_allowed", "An account involved is not in a state that allows this."),
    ("2028", FAILED, "not_allowed", "The shortcode is not permitted this product."),
    (
        "2040",
        FAILED,
        "payer_not_found",
        "The recipient is not a registered M-Pesa customer; this payment type needs one.",
    ),
    ("8006", FAILED, "not_allowed", "The initiator's security credential is locked."),
    ("SFC_IC0003", FAILED, "payer_not_found", "M-Pesa does not know this phone number."),
    ("R000001", FAILED, "duplicate_transaction", "The transaction has already been reversed."),
    (
        "R000002",
        FAILED,
        "invalid_request",
        "The original transaction id given for the reversal is not valid.",
    ),
    ("100000000", PENDING, None, "The request is cached at M-Pesa, waiting to be processed."),
    ("100000001", FAILED, "provider_unavailable", "M-Pesa is overloaded."),
    ("100000002", FAILED, "provider_unavailable", "M-Pesa is throttling requests."),
    ("100000004", FAILED, "provider_error", "M-Pesa reported an internal error."),
    ("100000005", FAILED, "invalid_request", "An input value is invalid."),
    ("100000007", FAILED, "provider_error", "M-Pesa reported a service abnormality."),
    ("100000009", FAILED, "provider_error", "M-Pesa reported an API abnormality."),
    ("100000010", FAILED, "not_allowed", "Insufficient permissions for this API."),
    ("100000011", FAILED, "provider_unavailable", "The request rate limit was exceeded."),
)

# ----- MoMo: request status and failure reasons (momo.md §4.2, §6.2-6.3, §7.3) -----------------
_MOMO_STATUS: Final[tuple[_Row, ...]] = (
    ("PENDING", PENDING, None, "Waiting for the payer to approve on their phone."),
    ("CREATED", PENDING, None, "Created at MoMo, not yet processed (seen in sandbox)."),
    ("SUCCESSFUL", SUCCEEDED, None, "The payer approved and the payment went through."),
)
_MOMO_REASON: Final[tuple[_Row, ...]] = (
    ("APPROVAL_REJECTED", FAILED, "payer_declined", "The payer rejected the request."),
    ("PAYMENT_NOT_APPROVED", FAILED, "payer_declined", "The payer did not approve the payment."),
    ("TRANSACTION_CANCELED", FAILED, "payer_declined", "The transaction was cancelled."),
    ("EXPIRED", FAILED, "expired", "The request expired before the payer approved it."),
    (
        "COULD_NOT_PERFORM_TRANSACTION",
        FAILED,
        "expired",
        "MoMo could not complete it, usually because the payer did not approve within 5 minutes.",
    ),
    (
        "PAYER_NOT_FOUND",
        FAILED,
        "payer_not_found",
        "The payer's number is not a MoMo account (check the country code).",
    ),
    (
        "PAYEE_NOT_FOUND",
        FAILED,
        "payer_not_found",
        "The recipient's number is not a MoMo account (check the country code).",
    ),
    ("NOT_ENOUGH_FUNDS", FAILED, "insufficient_funds", "There are not enough funds."),
    (
        "INTERNAL_PROCESSING_ERROR",
        FAILED,
        "provider_error",
        "MoMo reported a generic internal error. MTN says this is most often insufficient funds "
        "on the payer's wallet: ask them to check their balance and try again.",
    ),
    ("SERVICE_UNAVAILABLE", FAILED, "provider_unavailable", "MoMo was temporarily unavailable."),
    ("PAYER_LIMIT_REACHED", FAILED, "limit_exceeded", "The payer's limit has been reached."),
    (
        "PAYEE_LIMIT_REACHED",
        FAILED,
        "limit_exceeded",
        "The recipient's limit has been reached (unconfirmed code).",
    ),
    (
        "NOT_ALLOWED",
        FAILED,
        "not_allowed",
        "The MoMo API user is not allowed to do this (permissions).",
    ),
    (
        "NOT_ALLOWED_TARGET_ENVIRONMENT",
        FAILED,
        "not_allowed",
        "The account's target environment is wrong for these credentials.",
    ),
    (
        "PAYEE_NOT_ALLOWED_TO_RECEIVE",
        FAILED,
        "not_allowed",
        "The receiving account is not allowed to receive this payment (e.g. its limits).",
    ),
    (
        "SENDER_ACCOUNT_NOT_ACTIVE",
        FAILED,
        "not_allowed",
        "The sending account is not active (unconfirmed code).",
    ),
    (
        "INVALID_CURRENCY",
        FAILED,
        "invalid_request",
        "The currency is not supported for this account (sandbox accepts only EUR).",
    ),
    (
        "INVALID_CALLBACK_URL_HOST",
        FAILED,
        "invalid_request",
        "The callback URL's host is not the one registered with MTN for this API user.",
    ),
    (
        "VALIDATION_ERROR",
        FAILED,
        "invalid_request",
        "MoMo rejected the request as invalid (unconfirmed code).",
    ),
    ("RESOURCE_NOT_FOUND", FAILED, "invalid_request", "MoMo has no such request."),
    (
        "RESOURCE_ALREADY_EXIST",
        FAILED,
        "duplicate_transaction",
        "The request reference was already used. Lipwa treats this as 'the original exists' "
        "and checks its status; it never marks a payment failed for it.",
    ),
    ("ONGOING", PENDING, None, "Still in progress at MoMo (sandbox, unconfirmed code)."),
    ("PAYER_DELAYED", PENDING, None, "The payer's side is delayed (sandbox, unconfirmed code)."),
    ("PAYEE_DELAYED", PENDING, None, "The payee's side is delayed (sandbox, unconfirmed code)."),
)


def _index(provider: str, api: str, rows: tuple[_Row, ...]) -> dict[str, CodeInfo]:
    return {code: CodeInfo(provider, code, state, fc, text, api) for code, state, fc, text in rows}


_STK_BY_CODE: Final = _index("mpesa", "stk", _MPESA_STK)
_B2C_BY_CODE: Final = _index("mpesa", "b2c", _MPESA_B2C)
_MOMO_STATUS_BY_CODE: Final = _index("momo", "status", _MOMO_STATUS)
_MOMO_REASON_BY_CODE: Final = _index("momo", "reason", _MOMO_REASON)


def normalise_mpesa_code(code: object) -> str:
    """Raw M-Pesa code as a string: numbers and numeric strings alike; all-zero means "0"."""
    if isinstance(code, bool) or code is None:
        return "" if code is None else str(code)
    if isinstance(code, float) and code.is_integer():
        code = int(code)
    text = str(code).strip()
    if text and set(text) == {"0"}:  # "0", "00", "00000000"
        return "0"
    return text


def _mpesa_lookup(table: dict[str, CodeInfo], api: str, code: object) -> CodeInfo:
    raw = normalise_mpesa_code(code)
    found = table.get(raw) or table.get(raw.upper())
    if found is not None:
        return found
    return CodeInfo(
        "mpesa",
        raw,
        FAILED,
        "unknown_failure",
        f"M-Pesa result code {raw or '(missing)'} is not in Lipwa's catalogue; treated as a "
        "failure. Contact support with this code.",
        api,
    )


def mpesa_stk_result(code: object) -> CodeInfo:
    """An STK callback or STK query ``ResultCode`` (number or string)."""
    return _mpesa_lookup(_STK_BY_CODE, "stk", code)


def mpesa_b2c_result(code: object) -> CodeInfo:
    """A B2C, reversal, transaction status or account balance ``ResultCode``."""
    return _mpesa_lookup(_B2C_BY_CODE, "b2c", code)


def momo_reason_parts(reason: object) -> tuple[str | None, str | None]:
    """``(code, message)`` of a MoMo ``reason``: a bare string or ``{"code", "message"}``."""
    if isinstance(reason, str):
        return (reason.strip() or None), None
    if isinstance(reason, dict):
        code = reason.get("code")
        message = reason.get("message")
        return (
            code.strip() or None if isinstance(code, str) else None,
            message if isinstance(message, str) else None,
        )
    return None, None


def momo_result(status: str, reason: object) -> CodeInfo:
    """A MoMo status (``PENDING``/``CREATED``/``SUCCESSFUL``/``FAILED``) and its ``reason``.

    Decision: an unrecognised *status* is reported as pending, never as a final state, so a
    surprise value keeps the payment open for querying and reconciliation instead of
    settling it wrongly. An unrecognised *reason* on ``FAILED`` is ``unknown_failure``.
    """
    normalised = str(status).strip().upper()
    code, _ = momo_reason_parts(reason)
    if normalised == "FAILED":
        if code is None:
            return CodeInfo(
                "momo",
                "FAILED",
                FAILED,
                "unknown_failure",
                "MoMo reported a failure without a reason.",
                "status",
            )
        found = _MOMO_REASON_BY_CODE.get(code.upper())
        if found is not None and found.state == FAILED:
            return found
        return CodeInfo(
            "momo",
            code,
            FAILED,
            "unknown_failure",
            f"MoMo failure reason {code} is not in Lipwa's catalogue; treated as a failure.",
            "reason",
        )
    found = _MOMO_STATUS_BY_CODE.get(normalised)
    if found is not None:
        return found
    return CodeInfo(
        "momo",
        normalised or "(missing)",
        PENDING,
        None,
        f"MoMo status {normalised or '(missing)'} is not recognised; kept open and checked "
        "again rather than settled.",
        "status",
    )


def catalogue() -> list[CodeInfo]:
    """Every known code, for the docs and the support reference."""
    return [
        *_STK_BY_CODE.values(),
        *_B2C_BY_CODE.values(),
        *_MOMO_STATUS_BY_CODE.values(),
        *_MOMO_REASON_BY_CODE.values(),
    ]
