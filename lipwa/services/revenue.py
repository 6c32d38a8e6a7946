"""The revenue report: streams the payments of a date range and aggregates them (pure part in
``lipwa.domain.revenue``). Scoped to one mode (live money by default) and, for a merchant's
API key, to that merchant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import FIRST_DAY, LAST_DAY
from lipwa.domain.errors import DomainError
from lipwa.domain.revenue import Aggregator, PaymentFigures, RefundFigures
from lipwa.store.tables import Payment, Refund

MAX_DAYS = 366
# Local days run from UTC-1 to UTC+3 in the supported markets; read one day more each side.
_MARGIN = timedelta(days=1)


def parse_day(text: str, param: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise DomainError(
            "invalid_date", f"{param} must be a date like 2026-01-31.", param
        ) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise DomainError(
            "invalid_date",
            f"{param} must be between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}.",
            param,
        )
    return day


def check_range(first: date, last: date) -> None:
    if last < first:
        raise DomainError("invalid_date_range", "to must be on or after from.", "to")
    if (last - first).days + 1 > MAX_DAYS:
        raise DomainError("invalid_date_range", f"A report covers at most {MAX_DAYS} days.", "to")


async def _figures(
    session: AsyncSession, first: date, last: date, mode: str, merchant_id: str | None
) -> AsyncIterator[PaymentFigures]:
    start = datetime.combine(first, time(0), UTC) - _MARGIN
    end = datetime.combine(last + timedelta(days=1), time(0), UTC) + _MARGIN
    query = select(
        Payment.merchant_id,
        Payment.currency,
        Payment.status,
        Payment.amount,
        Payment.provider_fee,
        Payment.platform_fee,
        Payment.created_at,
    ).where(Payment.mode == mode, Payment.created_at >= start, Payment.created_at < end)
    if merchant_id:
        query = query.where(Payment.merchant_id == merchant_id)
    result = await session.stream(query.execution_options(yield_per=2000))
    async for r in result:
        yield PaymentFigures(
            merchant_id=r.merchant_id,
            currency=r.currency,
            status=r.status,
            amount=r.amount,
            provider_fee=r.provider_fee,
            platform_fee=r.platform_fee,
            created_at=r.created_at,
        )


async def _refunds(
    session: AsyncSession, first: date, last: date, mode: str, merchant_id: str | None
) -> AsyncIterator[RefundFigures]:
    start = datetime.combine(first, time(0), UTC) - _MARGIN
    end = datetime.combine(last + timedelta(days=1), time(0), UTC) + _MARGIN
    query = select(Refund.merchant_id, Refund.currency, Refund.amount, Refund.created_at).where(
        Refund.mode == mode,
        Refund.status == "succeeded",
        Refund.created_at >= start,
        Refund.created_at < end,
    )
    if merchant_id:
        query = query.where(Refund.merchant_id == merchant_id)
    result = await session.stream(query.execution_options(yield_per=2000))
    async for r in result:
        yield RefundFigures(r.merchant_id, r.currency, r.amount, r.created_at)


async def revenue_report(
    session: AsyncSession,
    first: date,
    last: date,
    *,
    mode: str = "live",
    merchant_id: str | None = None,
) -> dict[str, Any]:
    check_range(first, last)
    aggregator = Aggregator(first, last)
    async for figures in _figures(session, first, last, mode, merchant_id):
        aggregator.add(figures)
    async for refund in _refunds(session, first, last, mode, merchant_id):
        aggregator.add_refund(refund)
    lines, totals = aggregator.result()
    return {
        "object": "revenue_report",
        "from": first.isoformat(),
        "to": last.isoformat(),
        "mode": mode,
        "merchant_id": merchant_id,
        "day_basis": "creation time, local day of the currency's market (KES: Africa/Nairobi)",
        "provider_fees_are_estimates": True,
        "data": [line.view() for line in lines],
        "totals": [line.view() for line in totals],
    }
