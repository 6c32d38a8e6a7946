"""Daraja wire format: request bodies, the error shape and what each error means.

Pure functions, no I/O. Facts: ../shared/providers/daraja.md §2.1, §2.3, §3.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from lipwa.providers.mpesa.credentials import TILL, MpesaCredentials
from lipwa.providers.scrub import scrub as _scrub

# Kenya has no daylight saving time: a fixed offset is exact and needs no tz database.
KENYA_TZ: Final = timezone(timedelta(hours=3), "EAT")

OAUTH_PATH: Final = "/oauth/v1/generate"
STK_PUSH_PATH: Final = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH: Final = "/mpesa/stkpushquery/v1/query"

ACCOUNT_REFERENCE_MAX: Final = 12
TRANSACTION_DESC_MAX: Final = 13
MESSAGE_MAX: Final = 300

# Answers meaning "your bearer token is not valid": refresh it and try once more.
INVALID_TOKEN_CODES: Final = frozenset({"404.001.03", "401.002.01", "400.003.01"})
THROTTLE_CODES: Final = frozenset({"500.003.02", "500.003.03"})
INTERNAL_ERROR_CODE: Final = "500.003.1001"


def timestamp(now: datetime) -> str:
    """``YYYYMMDDHHmmss`` in Kenya time, the ``Timestamp`` of STK requests."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(KENYA_TZ).strftime("%Y%m%d%H%M%S")


def stk_password(shortcode: str, passkey: str, stamp: str) -> str:
    """``base64(BusinessShortCode + Passkey + Timestamp)``."""
    return base64.b64encode(f"{shortcode}{passkey}{stamp}".encode()).decode("ascii")


def digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def stk_push_body(
    credentials: MpesaCredentials,
    *,
    amount: int,
    phone: str,
    account_reference: str,
    description: str,
    callback_url: str,
    stamp: str,
) -> dict[str, Any]:
    """The STK push request. Paybill and till differ in TransactionType and PartyB.

    ``AccountReference`` and ``TransactionDesc`` are cut to Daraja's 12 and 13 characters
    (they are display text on the prompt and are not echoed back).
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("amount must be a whole number of KES (int)")
    msisdn = digits(phone)
    till = credentials.kind == TILL
    return {
        "BusinessShortCode": credentials.shortcode,
        "Password": stk_password(credentials.shortcode, credentials.passkey, stamp),
        "Timestamp": stamp,
        "TransactionType": "CustomerBuyGoodsOnline" if till else "CustomerPayBillOnline",
        "Amount": amount,
        "PartyA": msisdn,
        "PartyB": credentials.till_number if till else credentials.shortcode,
        "PhoneNumber": msisdn,
        "CallBackURL": callback_url,
        "AccountReference": account_reference[:ACCOUNT_REFERENCE_MAX],
        "TransactionDesc": description[:TRANSACTION_DESC_MAX],
    }


def stk_query_body(
    credentials: MpesaCredentials, checkout_request_id: str, *, stamp: str
) -> dict[str, Any]:
    return {
        "BusinessShortCode": credentials.shortcode,
        "Password": stk_password(credentials.shortcode, credentials.passkey, stamp),
        "Timestamp": stamp,
        "CheckoutRequestID": checkout_request_id,
    }


def json_object(content: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None (empty, HTML, a list, invalid...)."""
    try:
        value = json.loads(content)
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class DarajaError:
    """Daraja's error shape ``{requestId, errorCode, errorMessage}``."""

    code: str
    message: str


def parse_error(body: dict[str, Any] | None) -> DarajaError | None:
    """The error in a body, if it has Daraja's error shape (or the OAuth resultCode variant)."""
    if body is None:
        return None
    for code_key, message_key in (("errorCode", "errorMessage"), ("resultCode", "resultDesc")):
        code = body.get(code_key)
        if isinstance(code, str | int) and not isinstance(code, bool) and str(code).strip():
            message = body.get(message_key)
            return DarajaError(str(code).strip(), message if isinstance(message, str) else "")
    return None


def is_invalid_token(error: DarajaError | None, http_status: int) -> bool:
    if error is None:
        return http_status == 401
    return error.code in INVALID_TOKEN_CODES or (
        error.code.startswith("401") and "access token" in error.message.lower()
    )


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Cut ``text`` and replace any secret in it (providers echo tokens in some errors)."""
    return _scrub(text, secrets, MESSAGE_MAX)


@dataclass(frozen=True)
class Refusal:
    """How the gateway should read a Daraja error answer to a request that starts something."""

    ambiguous: bool  # True: the request may have started; never resend blindly
    failure_code: str
    transient: bool


def classify_push_error(error: DarajaError | None, http_status: int) -> Refusal:
    """Read an error answer to an STK push.

    A Daraja error body is a definite refusal (the push did not start), except the generic
    ``500.003.1001 Internal Server Error``: the platform failed somewhere and cannot say
    whether the push went out (decision: ambiguous). 5xx without a Daraja body is ambiguous.
    """
    if error is None:
        if http_status >= 500 or http_status < 400:
            return Refusal(True, "provider_error", False)
        if http_status == 429:
            return Refusal(False, "provider_unavailable", True)
        if http_status in (401, 403):
            return Refusal(False, "not_allowed", False)
        return Refusal(False, "invalid_request", False)
    message = error.message.lower()
    if error.code == INTERNAL_ERROR_CODE and "internal server error" in message:
        return Refusal(True, "provider_error", False)
    if error.code in THROTTLE_CODES or "spike arrest" in message or "quota" in message:
        return Refusal(False, "provider_unavailable", True)
    if "maintenance" in message or "system is busy" in message:
        return Refusal(False, "provider_unavailable", True)
    if "lock subscriber" in message:
        return Refusal(False, "subscriber_busy", True)
    if "wrong credentials" in message or "merchant does not exist" in message:
        return Refusal(False, "not_allowed", False)
    if "duplicate" in message:
        return Refusal(False, "duplicate_transaction", False)
    if is_invalid_token(error, http_status) or error.code.startswith(("401", "403")):
        return Refusal(False, "not_allowed", False)
    if error.code.startswith(("400", "404", "405")):
        return Refusal(False, "invalid_request", False)
    return Refusal(False, "rejected_by_provider", False)


def is_still_processing(error: DarajaError | None) -> bool:
    """STK query while the prompt is open: ``500.001.1001 The transaction is being processed``."""
    return error is not None and "being processed" in error.message.lower()


def is_unknown_checkout(error: DarajaError | None) -> bool:
    """STK query for an id Daraja does not know: ``400.002.02 ... Invalid CheckoutRequestID``."""
    return (
        error is not None
        and error.code.startswith("400")
        and "invalidcheckoutrequestid" in error.message.lower().replace(" ", "")
    )
