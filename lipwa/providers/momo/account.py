"""MoMo account-holder checks and account balance on the wire (momo.md §4.5, §5.5).

Pure functions, no I/O:

- ``GET /{product}/v1_0/accountholder/msisdn/{msisdn}/active`` → ``{"result": true|false}``
  (false: not active *or* not found; old docs answered 404 for not found: read as false);
- ``GET /{product}/v1_0/accountholder/msisdn/{msisdn}/basicuserinfo`` → ``given_name``,
  ``family_name``, ``name`` … (no consent needed);
- ``GET /{product}/v1_0/account/balance`` → ``{"availableBalance": "1000", "currency": "EUR"}``
  (``availableBalance`` a string in the spec, a number in some sandbox samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

from lipwa.providers.momo.wire import digits

NAME_MAX: Final = 200


def active_path(product: str, msisdn: str) -> str:
    return f"/{product}/v1_0/accountholder/msisdn/{digits(msisdn)}/active"


def basic_user_info_path(product: str, msisdn: str) -> str:
    return f"/{product}/v1_0/accountholder/msisdn/{digits(msisdn)}/basicuserinfo"


def balance_path(product: str) -> str:
    return f"/{product}/v1_0/account/balance"


def read_active(body: object) -> bool | None:
    """``{"result": true|false}`` → the bool; anything else → None."""
    if isinstance(body, dict) and isinstance(body.get("result"), bool):
        return bool(body["result"])
    return None


def _text(value: object) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def read_holder_name(body: object) -> str | None:
    """``given_name family_name`` (or ``name``) of a basicuserinfo answer; None if absent."""
    if not isinstance(body, dict):
        return None
    parts = [_text(body.get("given_name")), _text(body.get("family_name"))]
    name = " ".join(p for p in parts if p) or _text(body.get("name"))
    return name[:NAME_MAX] or None


@dataclass(frozen=True)
class MomoBalance:
    product: str  # collection | disbursement
    available: Decimal
    currency: str


def read_balance(product: str, body: object) -> MomoBalance | None:
    if not isinstance(body, dict):
        return None
    raw, currency = body.get("availableBalance"), body.get("currency")
    if (
        isinstance(raw, bool)
        or not isinstance(raw, str | int | float)
        or not isinstance(currency, str)
    ):
        return None
    try:
        amount = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite():
        return None
    return MomoBalance(product, amount, currency.strip().upper()[:3])
