"""The daily total per payer per merchant, counted over the payer's local day.

Defaults per currency (overridable per merchant in
``settings["limits"][CUR]["daily_per_payer"]``; ``null`` there switches the limit off). The day
is the market's civil day: East Africa has no daylight saving, so fixed offsets are exact
(Africa/Nairobi and Africa/Kampala UTC+3, Africa/Kigali UTC+2) and need no tz database.
Currencies without a default have no daily limit unless a merchant sets one; their day is UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from lipwa.domain.errors import DomainError
from lipwa.domain.money import format_amount, parse_amount

DAILY_PER_PAYER: dict[str, Decimal] = {
    "KES": Decimal(150_000),
    "RWF": Decimal(2_000_000),
    "UGX": Decimal(10_000_000),
}

DAY_ZONES: dict[str, tuple[str, timezone]] = {
    "KES": ("Africa/Nairobi", timezone(timedelta(hours=3))),
    "RWF": ("Africa/Kigali", timezone(timedelta(hours=2))),
    "UGX": ("Africa/Kampala", timezone(timedelta(hours=3))),
}
_UTC = ("UTC", timezone.utc)  # noqa: UP017 - a timezone object, not datetime.UTC's alias


def daily_limit_for(currency: str, overrides: Mapping[str, Any] | None = None) -> Decimal | None:
    """The daily total per payer in ``currency`` (None: no limit), with a merchant's override.

    ``overrides`` is the merchant's ``limits`` object, keyed by currency (the same object
    ``rule_for`` reads): ``{"KES": {"daily_per_payer": "50000"}}``.
    """
    override = (overrides or {}).get(currency) if isinstance(overrides, Mapping) else None
    if not isinstance(override, Mapping) or "daily_per_payer" not in override:
        return DAILY_PER_PAYER.get(currency)
    value = override["daily_per_payer"]
    if value is None:
        return None
    param = f"limits.{currency}.daily_per_payer"
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        message = 'daily_per_payer must be a decimal string such as "50000", or null.'
        raise DomainError("invalid_amount_limits", message, param)
    try:
        return parse_amount(str(value), currency, param=param)
    except DomainError as exc:
        raise DomainError("invalid_amount_limits", exc.message, param) from None


def day_zone(currency: str) -> tuple[str, timezone]:
    """The (name, fixed offset) whose civil day counts for ``currency``."""
    return DAY_ZONES.get(currency, _UTC)


def day_start(now: datetime, currency: str) -> datetime:
    """The start (an aware UTC datetime) of the payer's local day that contains ``now``."""
    if now.tzinfo is None:
        raise ValueError("day_start needs an aware datetime")
    zone = day_zone(currency)[1]
    local = now.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(timezone.utc)  # noqa: UP017


def check_daily_total(
    spent: Decimal, amount: Decimal, limit: Decimal | None, currency: str, param: str = "amount"
) -> None:
    """Raise ``daily_limit_exceeded`` if ``spent`` today plus ``amount`` is above ``limit``."""
    if limit is None or spent + amount <= limit:
        return
    left = max(limit - spent, Decimal(0))
    zone = day_zone(currency)[0]
    raise DomainError(
        "daily_limit_exceeded",
        f"This payer may pay you at most {format_amount(limit, currency)} {currency} per day "
        f"({zone} day); {format_amount(left, currency)} {currency} is left for today.",
        param=param,
    )
