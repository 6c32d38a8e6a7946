"""Reading payments: always scoped to one merchant and one mode."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.errors import invalid, not_found
from lipwa.services.accounts import Caller
from lipwa.services.cursors import decode_cursor, encode_cursor
from lipwa.services.transitions import payment_view
from lipwa.store.tables import Payment

MAX_LIMIT = 100


async def get_payment(session: AsyncSession, caller: Caller, payment_id: str) -> Payment:
    payment = await session.get(Payment, payment_id, populate_existing=True)
    # Another merchant's payment (or the other mode's) is indistinguishable from none at all.
    if payment is None or payment.merchant_id != caller.merchant_id or payment.mode != caller.mode:
        raise not_found("payment", payment_id)
    return payment


@dataclass(frozen=True)
class PaymentFilter:
    status: str | None = None
    reference: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    limit: int = 20
    cursor: str | None = None


async def list_payments(
    session: AsyncSession, caller: Caller, flt: PaymentFilter
) -> dict[str, Any]:
    if not 1 <= flt.limit <= MAX_LIMIT:
        raise invalid("invalid_limit", f"limit must be between 1 and {MAX_LIMIT}", "limit")
    query = select(Payment).where(
        Payment.merchant_id == caller.merchant_id, Payment.mode == caller.mode
    )
    if flt.status:
        query = query.where(Payment.status == flt.status)
    if flt.reference:
        query = query.where(Payment.reference == flt.reference)
    if flt.created_from:
        query = query.where(Payment.created_at >= flt.created_from)
    if flt.created_to:
        query = query.where(Payment.created_at < flt.created_to)
    if flt.cursor:
        created, ident = decode_cursor(flt.cursor)
        query = query.where(
            or_(
                Payment.created_at < created,
                and_(Payment.created_at == created, Payment.id < ident),
            )
        )
    rows = list(
        await session.scalars(
            query.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(flt.limit + 1)
        )
    )
    has_more = len(rows) > flt.limit
    rows = rows[: flt.limit]
    return {
        "object": "list",
        "data": [payment_view(p) for p in rows],
        "has_more": has_more,
        "next_cursor": encode_cursor(rows[-1].created_at, rows[-1].id)
        if has_more and rows
        else None,
    }
