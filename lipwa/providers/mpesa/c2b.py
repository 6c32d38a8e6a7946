"""Daraja C2B on the wire: URL registration, and the validation / confirmation requests
Daraja sends to the merchant's URLs (daraja.md §2.4, §5.4).

Pure functions, no I/O. Tolerant of Safaricom's quirks: the register answer spells
``OriginatorCoversationID`` (sic), its ``ResponseCode`` is ``"0"``, ``"00000000"`` or absent;
every value of a validation/confirmation body is a string, the MSISDN is masked (or hashed).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

from lipwa.providers.mpesa.wire import DarajaError

REGISTER_PATH: Final = "/mpesa/c2b/v2/registerurl"
RESPONSE_TYPES: Final = ("Completed", "Cancelled")
ResponseType = Literal["Completed", "Cancelled"]

# Daraja refuses C2B URLs containing any of these, in any case (official URL rules).
FORBIDDEN_URL_WORDS: Final = ("m-pesa", "mpesa", "safaricom", "exec", "exe", "cmd", "sql", "query")
ALREADY_REGISTERED_CODE: Final = "500.003.1001"

# Validation answers (§2.4): "0" accepts; C2B00011 Invalid MSISDN, C2B00012 Invalid Account
# Number, C2B00013 Invalid Amount, C2B00014 Invalid KYC Details, C2B00015 Invalid Shortcode,
# C2B00016 Other Error reject (the codes Lipwa decides on: ``lipwa.domain.c2b``).
ACCEPT_CODE: Final = "0"


def forbidden_words(url: str) -> list[str]:
    """The words of Daraja's URL rules that ``url`` contains (case-insensitive); [] if none.

    ``exec`` is reported as such, not also as ``exe``."""
    lowered = url.lower()
    found: list[str] = []
    for word in FORBIDDEN_URL_WORDS:
        if word in lowered and not any(word in longer for longer in found):
            found.append(word)
    return found


def register_body(
    *, shortcode: str, response_type: str, confirmation_url: str, validation_url: str
) -> dict[str, Any]:
    if response_type not in RESPONSE_TYPES:
        raise ValueError(f"response_type must be one of {RESPONSE_TYPES} (exact spelling)")
    return {
        "ShortCode": shortcode,
        "ResponseType": response_type,
        "ConfirmationURL": confirmation_url,
        "ValidationURL": validation_url,
    }


@dataclass(frozen=True)
class Registration:
    """What Daraja said to a register-URL request."""

    ok: bool
    already_registered: bool = False
    conversation_id: str | None = None  # OriginatorCoversationID (Daraja's spelling)
    code: str | None = None
    message: str | None = None


def _is_zero(code: object) -> bool:
    text = str(code).strip()
    return bool(text) and text.strip("0") == ""


def read_registration(
    status: int, body: dict[str, Any] | None, error: DarajaError | None
) -> Registration:
    """Read the answer to ``registerurl``.

    Success: HTTP 2xx, no error body, and ``ResponseCode`` all zeros or absent (some answers
    carry only ``OriginatorCoversationID`` and ``ResponseDescription``).
    ``500.003.1001 Urls are already registered`` (production registers once) is told apart.
    """
    if error is not None:
        already = "already registered" in error.message.lower() or (
            error.code == ALREADY_REGISTERED_CODE
            and "duplicate notification" in error.message.lower()
        )
        return Registration(
            False, already_registered=already, code=error.code, message=error.message
        )
    if not 200 <= status < 300 or body is None:
        return Registration(False, code=f"http_{status}", message=f"Daraja answered HTTP {status}")
    conversation = body.get("OriginatorCoversationID") or body.get("OriginatorConversationID")
    code = body.get("ResponseCode")
    description = body.get("ResponseDescription")
    message = description if isinstance(description, str) else None
    if code is not None and not _is_zero(code):
        already = message is not None and "already registered" in message.lower()
        return Registration(
            False, already_registered=already, code=str(code).strip(), message=message
        )
    return Registration(
        True,
        conversation_id=str(conversation) if isinstance(conversation, str | int) else None,
        code=None if code is None else str(code).strip(),
        message=message,
    )


# ----- validation and confirmation requests (Daraja → merchant) -------------------------------
@dataclass(frozen=True)
class C2bNotice:
    """A validation or confirmation request, as Daraja sends it (all strings)."""

    trans_id: str
    amount_text: str
    shortcode: str
    bill_ref: str
    msisdn: str  # masked ("2547 ***** 126") or a hash: as given
    transaction_type: str
    trans_time: str
    invoice_number: str
    org_account_balance: str
    third_party_trans_id: str
    payer_name: str

    @property
    def amount(self) -> Decimal | None:
        """``TransAmount`` ("10.00") as a Decimal; None when it is not a positive number."""
        try:
            value = Decimal(self.amount_text.strip())
        except (InvalidOperation, ValueError):
            return None
        return value if value.is_finite() and value > 0 else None


def _field(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return str(value).strip()


def parse_notice(body: object) -> C2bNotice | None:
    """The notice in ``body``; None unless it is a JSON object with a ``TransID``."""
    if not isinstance(body, dict):
        return None
    trans_id = _field(body, "TransID")
    if not trans_id or len(trans_id) > 64:
        return None
    names = (_field(body, k) for k in ("FirstName", "MiddleName", "LastName"))
    return C2bNotice(
        trans_id=trans_id,
        amount_text=_field(body, "TransAmount"),
        shortcode=_field(body, "BusinessShortCode"),
        bill_ref=_field(body, "BillRefNumber")[:100],
        msisdn=_field(body, "MSISDN")[:100],
        transaction_type=_field(body, "TransactionType")[:40],
        trans_time=_field(body, "TransTime")[:20],
        invoice_number=_field(body, "InvoiceNumber")[:40],
        org_account_balance=_field(body, "OrgAccountBalance")[:40],
        third_party_trans_id=_field(body, "ThirdPartyTransID")[:64],
        payer_name=" ".join(n for n in names if n)[:200],
    )


def validation_reply(code: str) -> dict[str, str]:
    """The answer to a validation request: ``0`` accepts, a ``C2B000xx`` code rejects."""
    if code == ACCEPT_CODE:
        return {"ResultCode": ACCEPT_CODE, "ResultDesc": "Accepted"}
    return {"ResultCode": code, "ResultDesc": "Rejected"}


CONFIRMATION_REPLY: Final = {"ResultCode": 0, "ResultDesc": "Success"}
