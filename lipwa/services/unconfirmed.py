"""Callbacks the provider could not confirm yet (its status query failed, or Daraja's STK query
still says "being processed"), and which stored callbacks the sweeps take next.

An unconfirmed row stays unprocessed for the sweeps, marked ``unconfirmed`` so that rows never
tried are swept first (one merchant's broken key must not starve every merchant's callbacks),
and not asked about again before its ``retry_at``: the wait grows with the row's age, so a
lagging query is asked again within seconds, and a provider that is down for hours is not
polled in a loop. After ``UNCONFIRMED_FOR`` the row is given up (closed); its payment, payout
or refund is settled by its own status checks or a refresh.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import utcnow
from lipwa.store.tables import InboundCallback

log = structlog.get_logger("lipwa.callbacks")

UNCONFIRMED = "unconfirmed"
UNCONFIRMED_FOR = timedelta(hours=24)
RETRY_AFTER_MIN = timedelta(seconds=5)
RETRY_AFTER_MAX = timedelta(minutes=10)
# ORDER BY for the sweeps: rows never tried first, then oldest first.
UNTRIED_FIRST: tuple[Any, ...] = (InboundCallback.outcome.is_not(None), InboundCallback.id)


def retry_after(age: timedelta) -> timedelta:
    """How long an unconfirmed row waits before it is asked about again: a quarter of its
    age, between 5 seconds and 10 minutes."""
    return min(max(age / 4, RETRY_AFTER_MIN), RETRY_AFTER_MAX)


async def note_unconfirmed(sessions: async_sessionmaker[AsyncSession], callback_id: int) -> str:
    """Mark the row as tried (or give it up once too old); returns ``"unconfirmed"``."""
    now = utcnow()
    async with sessions() as session, session.begin():
        row = await session.get(InboundCallback, callback_id)
        if row is None or row.processed_at is not None:
            return UNCONFIRMED
        row.outcome = UNCONFIRMED
        age = now - row.received_at
        if age >= UNCONFIRMED_FOR:
            row.detail = "the provider could not confirm it for 24 h; given up"
            row.processed_at = now
            log.warning("callback_given_up", callback_id=callback_id)
        else:
            row.detail = "the provider could not confirm it yet; the sweep asks again"
            row.retry_at = now + retry_after(age)
    return UNCONFIRMED


async def due_callbacks(
    sessions: async_sessionmaker[AsyncSession],
    kinds: tuple[str, ...],
    older_than_s: float = 5.0,
    limit: int = 100,
) -> list[int]:
    """Ids of stored callbacks of these kinds that are due for the sweep: never applied,
    received more than ``older_than_s`` ago (the receiving process may still be at them), and
    past their ``retry_at`` if they were tried before; never tried first."""
    now = utcnow()
    async with sessions() as session:
        rows = await session.scalars(
            select(InboundCallback.id)
            .where(
                InboundCallback.processed_at.is_(None),
                InboundCallback.kind.in_(kinds),
                InboundCallback.received_at < now - timedelta(seconds=older_than_s),
                or_(InboundCallback.retry_at.is_(None), InboundCallback.retry_at <= now),
            )
            .order_by(*UNTRIED_FIRST)
            .limit(limit)
        )
        return list(rows)
