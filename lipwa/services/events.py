"""Reading events (the outbox), for merchants who poll instead of receiving webhooks.

Events are listed oldest first by ``created_at``, which is taken before their transaction
commits; two transactions can commit in the opposite order. A poller whose cursor passed a
younger event could then never see the older one committed after it. So the cursor never moves
past an event younger than ``settle_s``: such events are returned, and returned again by the
next poll. Pollers see every event at least once and drop repeats by event id.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import isoformat, utcnow
from lipwa.errors import not_found
from lipwa.services.accounts import Caller
from lipwa.services.cursors import decode_cursor, encode_cursor
from lipwa.store.tables import Event


def event_view(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "object": "event",
        "type": event.type,
        "resource_id": event.resource_id,
        "livemode": event.mode == "live",
        "created_at": isoformat(event.created_at),
        "data": event.data,
    }


async def get_event(session: AsyncSession, caller: Caller, event_id: str) -> Event:
    event = await session.get(Event, event_id)
    if event is None or event.merchant_id != caller.merchant_id or event.mode != caller.mode:
        raise not_found("event", event_id)
    return event


async def list_events(
    session: AsyncSession,
    caller: Caller,
    *,
    type_: str | None = None,
    resource_id: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
    settle_s: float = 5.0,
) -> dict[str, Any]:
    """Oldest first, so a poller can keep its cursor and never miss one."""
    query = select(Event).where(Event.merchant_id == caller.merchant_id, Event.mode == caller.mode)
    if type_:
        query = query.where(Event.type == type_)
    if resource_id:
        query = query.where(Event.resource_id == resource_id)
    if cursor:
        created, ident = decode_cursor(cursor)
        query = query.where(
            or_(Event.created_at > created, and_(Event.created_at == created, Event.id > ident))
        )
    rows = list(await session.scalars(query.order_by(Event.created_at, Event.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    horizon = utcnow() - timedelta(seconds=settle_s)
    settled = [e for e in rows if e.created_at <= horizon]  # a prefix: rows are oldest first
    next_cursor = cursor
    if settled:
        next_cursor = encode_cursor(settled[-1].created_at, settled[-1].id)
    # More now only if this whole page settled: otherwise the next poll starts inside it.
    has_more = more and len(settled) == len(rows)
    return {
        "object": "list",
        "data": [event_view(e) for e in rows],
        "has_more": has_more,
        "next_cursor": next_cursor,
    }
