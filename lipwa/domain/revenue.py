"""Revenue lines: gross, provider fees, platform fees and net per merchant, currency and day.

Pure aggregation over plain payment facts; the query lives in ``lipwa.services.revenue``.

- **Day**: the payment's creation time on the local calendar of its currency's market
  (``CURRENCY_ZONES``: KES → Africa/Nairobi, RWF → Africa/Kigali, UGX → Africa/Kampala, …; the
  sandbox's EUR → UTC). A Kenyan shop's "Monday" is Monday in Nairobi, not in UTC; one line
  is always one currency, so one zone per line is unambiguous. Shared currencies (XOF, XAF)
  take the zone of the first MTN market using them.
- **Money**: only succeeded payments count: ``gross`` is their amount, ``net = gross -
  provider_fees - platform_fees - refunded`` exactly, where ``refunded`` is what succeeded
  refunds gave back, on the refund's own day (fees are not given back: M-Pesa and MTN keep
  theirs on a reversal). A succeeded payment without fees (succeeded before
  fees existed, or unreadable fee settings) counts its fees as zero and is counted in
  ``without_fees``.
- **Success rate**: succeeded / (succeeded + failed); open (pending/unknown) payments are not
  in it. None when nothing is final yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lipwa.domain.money import format_amount

CURRENCY_ZONES: dict[str, str] = {
    "KES": "Africa/Nairobi",
    "RWF": "Africa/Kigali",
    "UGX": "Africa/Kampala",
    "GHS": "Africa/Accra",
    "XAF": "Africa/Douala",
    "XOF": "Africa/Abidjan",
    "ZMW": "Africa/Lusaka",
    "SZL": "Africa/Mbabane",
    "GNF": "Africa/Conakry",
    "ZAR": "Africa/Johannesburg",
    "LRD": "Africa/Monrovia",
    "SSP": "Africa/Juba",
    "NGN": "Africa/Lagos",
    "EUR": "UTC",
}


def zone_for(currency: str) -> tzinfo:
    try:
        return ZoneInfo(CURRENCY_ZONES.get(currency, "UTC"))
    except ZoneInfoNotFoundError:  # no tz database on this machine
        return UTC


def local_day(currency: str, moment: datetime) -> date:
    return moment.astimezone(zone_for(currency)).date()


@dataclass(frozen=True)
class PaymentFigures:
    merchant_id: str
    currency: str
    status: str
    amount: Decimal
    provider_fee: Decimal | None
    platform_fee: Decimal | None
    created_at: datetime


@dataclass(frozen=True)
class RefundFigures:
    merchant_id: str
    currency: str
    amount: Decimal  # a succeeded refund
    created_at: datetime


@dataclass
class Line:
    merchant_id: str
    currency: str
    day: date | None  # None: a total over the whole range
    payments: int = 0
    succeeded: int = 0
    failed: int = 0
    open: int = 0
    without_fees: int = 0
    gross: Decimal = field(default_factory=Decimal)
    provider_fees: Decimal = field(default_factory=Decimal)
    platform_fees: Decimal = field(default_factory=Decimal)
    refunds: int = 0
    refunded: Decimal = field(default_factory=Decimal)

    @property
    def net(self) -> Decimal:
        return self.gross - self.provider_fees - self.platform_fees - self.refunded

    @property
    def success_rate(self) -> Decimal | None:
        final = self.succeeded + self.failed
        return None if final == 0 else (Decimal(self.succeeded) / final).quantize(Decimal("0.0001"))

    def add(self, p: PaymentFigures) -> None:
        self.payments += 1
        if p.status == "succeeded":
            self.succeeded += 1
            self.gross += p.amount
            if p.provider_fee is None or p.platform_fee is None:
                self.without_fees += 1
            self.provider_fees += p.provider_fee or 0
            self.platform_fees += p.platform_fee or 0
        elif p.status == "failed":
            self.failed += 1
        else:
            self.open += 1

    def add_refund(self, r: RefundFigures) -> None:
        self.refunds += 1
        self.refunded += r.amount

    def view(self) -> dict[str, Any]:
        def money(value: Decimal) -> str:
            try:
                return format_amount(value, self.currency)
            except ValueError:
                return f"{value:f}"

        rate = self.success_rate
        return {
            "merchant_id": self.merchant_id,
            "currency": self.currency,
            "day": self.day.isoformat() if self.day else None,
            "payments": self.payments,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "open": self.open,
            "success_rate": None if rate is None else f"{rate:f}",
            "gross": money(self.gross),
            "provider_fees": money(self.provider_fees),
            "platform_fees": money(self.platform_fees),
            "refunds": self.refunds,
            "refunded": money(self.refunded),
            "net": money(self.net),
            "without_fees": self.without_fees,
        }


class Aggregator:
    """Lines per (merchant, currency, local day) in ``[first, last]`` and totals per
    (merchant, currency) over the range, fed one payment at a time (streaming)."""

    def __init__(self, first: date, last: date) -> None:
        self.first, self.last = first, last
        self._lines: dict[tuple[str, str, date], Line] = {}
        self._totals: dict[tuple[str, str], Line] = {}

    def add(self, p: PaymentFigures) -> None:
        for line in self._lines_for(p.merchant_id, p.currency, p.created_at):
            line.add(p)

    def add_refund(self, r: RefundFigures) -> None:
        for line in self._lines_for(r.merchant_id, r.currency, r.created_at):
            line.add_refund(r)

    def _lines_for(self, merchant_id: str, currency: str, moment: datetime) -> list[Line]:
        """The day's line and the range's total, made when first needed; none off range."""
        day = local_day(currency, moment)
        if not self.first <= day <= self.last:
            return []
        key = (merchant_id, currency, day)
        if key not in self._lines:
            self._lines[key] = Line(merchant_id, currency, day)
        total_key = (merchant_id, currency)
        if total_key not in self._totals:
            self._totals[total_key] = Line(merchant_id, currency, None)
        return [self._lines[key], self._totals[total_key]]

    def result(self) -> tuple[list[Line], list[Line]]:
        """Both lists sorted: by merchant, currency and day; totals by merchant, currency."""
        lines = [self._lines[k] for k in sorted(self._lines)]
        return lines, [self._totals[k] for k in sorted(self._totals)]


def aggregate(
    payments: Iterable[PaymentFigures],
    first: date,
    last: date,
    refunds: Iterable[RefundFigures] = (),
) -> tuple[list[Line], list[Line]]:
    aggregator = Aggregator(first, last)
    for p in payments:
        aggregator.add(p)
    for r in refunds:
        aggregator.add_refund(r)
    return aggregator.result()
