"""Reading payouts and refunds: their API views, scoped lookups and cursor-paginated lists."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import isoformat
from lipwa.domain.money import format_amount
from lipwa.errors import invalid, not_found
from lipwa.services.accounts import Caller
from lipwa.services.cursors import decode_cursor, encode_cursor
from lipwa.services.payments import MAX_LIMIT
from lipwa.store.tables import Payout, Refund


def payout_view(payout: Payout) -> dict[str, Any]:
    return {
        "id": payout.id,
        "object": "payout",
        "status": payout.status,
        "amount": format_amount(payout.amount, payout.currency),
        "currency": payout.currency,
        "phone": payout.phone,
        "network": payout.network,
        "provider": payout.provider,
        "account_id": payout.account_id,
        "reason": payout.reason,
        "reference": payout.reference,
        "metadata": payout.meta,
        # OriginatorConversationID (M-Pesa) / X-Reference-Id (MoMo): quote it to the provider.
        "provider_request_id": payout.provider_request_id,
        "receipt": payout.receipt,
        "recipient_name": payout.recipient_name,
        "failure_code": payout.failure_code,
        "failure_message": payout.failure_message,
        "provider_code": payout.provider_code,
        "resolved_by": payout.resolved_by,
        "approval_required": payout.approval_required,
        "approved_by": payout.approved_by,
        "approved_at": isoformat(payout.approved_at),
        "requested_by": payout.requested_by,
        "mode": payout.mode,
        "livemode": payout.mode == "live",
        "created_at": isoformat(payout.created_at),
        "updated_at": isoformat(payout.updated_at),
        "finalized_at": isoformat(payout.finalized_at),
    }


def refund_view(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.id,
        "object": "refund",
        "payment_id": refund.payment_id,
        "status": refund.status,
        "amount": format_amount(refund.amount, refund.currency),
        "currency": refund.currency,
        "provider": refund.provider,
        "reason": refund.reason,
        "metadata": refund.meta,
        "receipt": refund.receipt,
        "failure_code": refund.failure_code,
        "failure_message": refund.failure_message,
        "provider_code": refund.provider_code,
        "resolved_by": refund.resolved_by,
        "mode": refund.mode,
        "livemode": refund.mode == "live",
        "created_at": isoformat(refund.created_at),
        "updated_at": isoformat(refund.updated_at),
        "finalized_at": isoformat(refund.finalized_at),
    }


async def get_payout(session: AsyncSession, caller: Caller, payout_id: str) -> Payout:
    payout = await session.get(Payout, payout_id, populate_existing=True)
    # Another merchant's payout (or the other mode's) is indistinguishable from none at all.
    if payout is None or payout.merchant_id != caller.merchant_id or payout.mode != caller.mode:
        raise not_found("payout", payout_id)
    return payout


async def get_refund(session: AsyncSession, caller: Caller, refund_id: str) -> Refund:
    refund = await session.get(Refund, refund_id, populate_existing=True)
    if refund is None or refund.merchant_id != caller.merchant_id or refund.mode != caller.mode:
        raise not_found("refund", refund_id)
    return refund


async def list_payouts(
    session: AsyncSession,
    caller: Caller,
    *,
    status: str | None = None,
    reference: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    query = select(Payout).where(
        Payout.merchant_id == caller.merchant_id, Payout.mode == caller.mode
    )
    if status:
        query = query.where(Payout.status == status)
    if reference:
        query = query.where(Payout.reference == reference)
    return await _page(session, query, Payout, payout_view, limit, cursor)


async def list_refunds(
    session: AsyncSession, caller: Caller, payment_id: str, limit: int = 100
) -> dict[str, Any]:
    query = select(Refund).where(
        Refund.merchant_id == caller.merchant_id,
        Refund.mode == caller.mode,
        Refund.payment_id == payment_id,
    )
    return await _page(session, query, Refund, refund_view, limit, None)


async def _page(
    session: AsyncSession,
    query: Select[Any],
    model: type[Payout] | type[Refund],
    view: Any,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid("invalid_limit", f"limit must be between 1 and {MAX_LIMIT}", "limit")
    if cursor:
        created, ident = decode_cursor(cursor)
        query = query.where(
            or_(model.created_at < created, and_(model.created_at == created, model.id < ident))
        )
    rows = list(
        await session.scalars(
            query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
        )
    )
    has_more = len(rows) > limit
    rows = rows[:limit]
    return {
        "object": "list",
        "data": [view(r) for r in rows],
        "has_more": has_more,
        "next_cursor": encode_cursor(rows[-1].created_at, rows[-1].id)
        if has_more and rows
        else None,
    }
