"""MTN MoMo wire facts for the simulator: environments, sandbox magic values, error shapes.

Everything here is data or a pure function; ``momo.py`` holds the routes and the state.
Sources are the facts sheet ``providers/momo.md`` (sections in brackets below).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse, Response

PRODUCTS = ("collection", "disbursement", "remittance")

# X-Target-Environment -> the only currency its accounts hold [1.4, 7.1, 8].
ENVIRONMENTS: dict[str, str] = {
    "sandbox": "EUR",
    "mtnuganda": "UGX",
    "mtnghana": "GHS",
    "mtnivorycoast": "XOF",
    "mtnzambia": "ZMW",
    "mtncameroon": "XAF",
    "mtnbenin": "XOF",
    "mtncongo": "XAF",
    "mtnswaziland": "SZL",
    "mtnguineaconakry": "GNF",
    "mtnsouthafrica": "ZAR",
    "mtnliberia": "LRD",
    "mtnsouthsudan": "SSP",
    "mtnnigeria": "NGN",
    "mtnrwanda": "RWF",
}

MESSAGES: dict[str, str] = {
    "RESOURCE_NOT_FOUND": "Requested resource was not found.",
    "RESOURCE_ALREADY_EXIST": "Duplicated reference id. Creation of resource failed.",
    "NOT_ALLOWED_TARGET_ENVIRONMENT": "Access to target environment is forbidden.",
    "INVALID_CURRENCY": "Currency not supported.",
    "INTERNAL_PROCESSING_ERROR": "An internal error occurred while processing.",
    "SERVICE_UNAVAILABLE": "Service is currently unavailable, try again later.",
    "NOT_ALLOWED": "Authorization failed. Insufficient permissions.",
    "INVALID_CALLBACK_URL_HOST": "Callback URL host does not match the registered host.",
}

APIM_INVALID_KEY = (
    "Access denied due to invalid subscription key. "
    "Make sure to provide a valid key for an active subscription."
)
# Simulator choice: the body MTN sends for a bad/expired bearer is unconfirmed [3]; we answer
# in the APIM gateway shape (Azure APIM's validate-jwt default text).
APIM_BAD_TOKEN = "Unauthorized. Access token is missing or invalid."


@dataclass(frozen=True)
class Outcome:
    """How a created resource ends. ``delay`` is in units of ``prompt_seconds``; None = never."""

    status: str  # final status: SUCCESSFUL | FAILED (PENDING only with delay None)
    reason: str | None = None
    delay: float | None = 1.0
    callback: bool = True


def _failed(reason: str, callback: bool = True) -> Outcome:
    return Outcome("FAILED", reason, callback=callback)


# Outcome names accepted by PUT /_sim/scenario for provider "momo".
OUTCOMES: dict[str, Outcome] = {
    "success": Outcome("SUCCESSFUL"),
    "no_callback": Outcome("SUCCESSFUL", callback=False),  # final, but the callback is lost
    "ongoing": Outcome("PENDING", delay=None),  # never leaves PENDING [7.3]
    "delayed": Outcome("SUCCESSFUL", delay=5.0),  # PENDING for 5 x prompt_seconds, then paid
    "failed": _failed("INTERNAL_PROCESSING_ERROR"),  # sandbox "Failed" [7.3]
    "rejected": _failed("APPROVAL_REJECTED"),
    "expired": _failed("EXPIRED"),
    "payer_not_found": _failed("PAYER_NOT_FOUND"),
    "payee_not_found": _failed("PAYEE_NOT_FOUND"),
    "payee_not_allowed_to_receive": _failed("PAYEE_NOT_ALLOWED_TO_RECEIVE"),
    "not_allowed": _failed("NOT_ALLOWED"),
    "not_allowed_target_environment": _failed("NOT_ALLOWED_TARGET_ENVIRONMENT"),
    # The callback host is what is "wrong", so no callback goes out for this one.
    "invalid_callback_url_host": _failed("INVALID_CALLBACK_URL_HOST", callback=False),
    "invalid_currency": _failed("INVALID_CURRENCY"),
    "internal_processing_error": _failed("INTERNAL_PROCESSING_ERROR"),
    "service_unavailable": _failed("SERVICE_UNAVAILABLE"),
    "could_not_perform_transaction": _failed("COULD_NOT_PERFORM_TRANSACTION"),
    "not_enough_funds": _failed("NOT_ENOUGH_FUNDS"),
    "payer_limit_reached": _failed("PAYER_LIMIT_REACHED"),
    "payment_not_approved": _failed("PAYMENT_NOT_APPROVED"),
    "transaction_canceled": _failed("TRANSACTION_CANCELED"),
}

_MAGIC = "467331234"
# Official sandbox use-case table [7.2]; request-to-pay and deposit share a column.
REQUEST_TO_PAY_TABLE: dict[str, str] = {
    _MAGIC + suffix: name
    for suffix, name in {
        "50": "failed",
        "51": "rejected",
        "52": "expired",
        "53": "ongoing",
        "54": "delayed",
        "55": "payer_not_found",
        "56": "payee_not_allowed_to_receive",
        "57": "not_allowed",
        "58": "not_allowed_target_environment",
        "59": "invalid_callback_url_host",
        "60": "invalid_currency",
        "61": "internal_processing_error",
        "62": "service_unavailable",
        "63": "could_not_perform_transaction",
    }.items()
}
# The transfer column is shifted from ...455 on [7.2].
TRANSFER_TABLE: dict[str, str] = {
    _MAGIC + suffix: name
    for suffix, name in {
        "50": "failed",
        "51": "rejected",
        "52": "expired",
        "53": "ongoing",
        "54": "delayed",
        "55": "not_enough_funds",
        "56": "payer_limit_reached",
        "57": "payee_not_found",
        "58": "not_allowed",
        "59": "not_allowed_target_environment",
        "60": "invalid_callback_url_host",
        "61": "invalid_currency",
        "62": "internal_processing_error",
        "63": "service_unavailable",
    }.items()
}
# Refund values 1..13 [7.2]; the carrying field is unconfirmed, the simulator reads externalId.
REFUND_TABLE: dict[str, str] = {
    "1": "payee_not_found",
    "2": "failed",
    "3": "rejected",
    "4": "expired",
    "5": "ongoing",
    "6": "delayed",
    "7": "not_allowed",
    "8": "not_allowed_target_environment",
    "9": "invalid_callback_url_host",
    "10": "invalid_currency",
    "11": "internal_processing_error",
    "12": "service_unavailable",
    "13": "could_not_perform_transaction",
}

# Account-holder "active" magic values [7.2]: True/False result, or (http status, error code).
_HOLDER_CASES: list[bool | tuple[int, str]] = [
    False,  # NotFound
    False,  # NotActive
    (500, "NOT_ALLOWED"),
    (500, "NOT_ALLOWED_TARGET_ENVIRONMENT"),
    (500, "INTERNAL_PROCESSING_ERROR"),
    (503, "SERVICE_UNAVAILABLE"),
]
_HOLDER_EMAILS = ["notfound", "notactive", "notallowed", "notallowedtargetenvironment",
                  "internalprocessingerror", "serviceunavailable"]
_HOLDER_PARTY_CODES = [
    "5cecb5a7-8bd0-4f49-87b1-8eb9ecc7b7bc",
    "b0040b3c-b426-4a90-af6e-673e65861cd7",
    "4d5f500f-c385-4901-9be5-25b6d36ad220",
    "d2265f9b-0c22-496d-908f-79a65ad66266",
    "8f548a78-ceb8-4d12-a243-5640b91e91a4",
    "585c07a4-2c80-42f7-9e73-e586b36dee68",
]
ACCOUNT_HOLDER_TABLE: dict[tuple[str, str], bool | tuple[int, str]] = {
    **{("msisdn", f"{_MAGIC}{50 + i}"): case for i, case in enumerate(_HOLDER_CASES)},
    **{("email", f"{e}@email.com"): c for e, c in zip(_HOLDER_EMAILS, _HOLDER_CASES, strict=True)},
    **{("party_code", p): c for p, c in zip(_HOLDER_PARTY_CODES, _HOLDER_CASES, strict=True)},
}

BASIC_USER_INFO: dict[str, str] = {  # the sandbox always answers "Sand Box" [4.5]
    "sub": "0",
    "name": "Sand Box",
    "given_name": "Sand",
    "family_name": "Box",
    "birthdate": "1976-08-13",
    "locale": "sv_SE",
    "gender": "MALE",
    "updated_at": "1676978048",
}


# ----- responses --------------------------------------------------------------------------
class Reject(Exception):
    """Raised inside a handler to answer with ``response`` at once."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def product_error(status: int, code: str, message: str | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message or MESSAGES.get(code, code)}, status)


def apim_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"statusCode": status, "message": message}, status)


def bad_request(why: str) -> Response:
    """400 with an empty body, as MoMo often sends [6.1]; the cause goes in a sim-only header."""
    return Response(status_code=400, headers={"X-Lipwa-Sim-Reason": why[:200]})


def bad(why: str) -> Reject:
    return Reject(bad_request(why))


# ----- validation -------------------------------------------------------------------------
_UUID4 = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.IGNORECASE
)
_AMOUNT = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,2})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_MSISDN = re.compile(r"^[0-9]{5,15}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
PARTY_TYPES = ("MSISDN", "EMAIL", "PARTY_CODE")


def is_uuid4(value: str) -> bool:
    return bool(_UUID4.match(value))


def reference(value: str | None, what: str = "X-Reference-Id") -> str:
    """A UUID v4 in canonical form, lower-cased (lookups ignore case)."""
    if not value or not is_uuid4(value):
        raise bad(f"{what} must be a UUID version 4")
    return value.lower()


def party_id_ok(kind: str, value: str) -> bool:
    """Whether ``value`` is well-formed for the party type (upper-case body form)."""
    if kind == "MSISDN":
        return bool(_MSISDN.match(value))
    if kind == "EMAIL":
        return bool(_EMAIL.match(value)) and len(value) <= 254
    return kind == "PARTY_CODE" and is_uuid4(value)


def _string(body: dict[str, Any], name: str, required: bool) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise bad(f"{name} must be a string")
    return value


def _message(body: dict[str, Any], name: str) -> str | None:
    value = _string(body, name, required=False)
    # Max 160 characters; the apostrophe is a documented cause of 400 [4.1].
    if value is not None and (len(value) > 160 or "'" in value):
        raise bad(f"{name} must be at most 160 characters without apostrophes")
    return value


def _party(body: dict[str, Any], name: str) -> dict[str, str]:
    party = body.get(name)
    if not isinstance(party, dict):
        raise bad(f"{name} must be an object")
    kind, value = party.get("partyIdType"), party.get("partyId")
    if kind not in PARTY_TYPES or not isinstance(value, str) or not party_id_ok(kind, value):
        raise bad(f"{name} needs partyIdType MSISDN|EMAIL|PARTY_CODE and a matching partyId")
    return {"partyIdType": kind, "partyId": value}


@dataclass(frozen=True)
class Order:
    """A validated request-to-pay / transfer / deposit / refund body."""

    amount: str
    currency: str
    external_id: str | None
    party: dict[str, str] | None
    payer_message: str | None
    payee_note: str | None
    refund_of: str | None = None


def parse_order(body: Any, party_field: str | None) -> Order:
    """Validate an order body; ``party_field`` is payer/payee, or None for a refund."""
    if not isinstance(body, dict):
        raise bad("body must be a JSON object")
    # Amount is a string on the wire [4.1]. Whether MoMo accepts a JSON number is unconfirmed;
    # the simulator is strict so a gateway that sends numbers finds out here.
    amount = _string(body, "amount", required=True)
    if amount is None or not _AMOUNT.match(amount) or Decimal(amount) <= 0:
        raise bad("amount must be a positive numeric string")
    currency = _string(body, "currency", required=True)
    if currency is None or not _CURRENCY.match(currency):
        raise bad("currency must be an ISO 4217 code")
    external_id = _string(body, "externalId", required=False)
    if external_id is not None and len(external_id) > 256:
        raise bad("externalId too long")
    party = _party(body, party_field) if party_field else None
    refund_of = None
    if party_field is None:
        refund_of = reference(_string(body, "referenceIdToRefund", True), "referenceIdToRefund")
    return Order(
        amount=amount,
        currency=currency,
        external_id=external_id,
        party=party,
        payer_message=_message(body, "payerMessage"),
        payee_note=_message(body, "payeeNote"),
        refund_of=refund_of,
    )


def callback_host(url: str) -> str:
    """The host of an X-Callback-Url, lower-cased; 400 if it is not an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise bad("X-Callback-Url is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise bad("X-Callback-Url must be an absolute http(s) URL")
    return host.lower()
