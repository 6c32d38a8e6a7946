"""MoMo callbacks MTN could not be asked about yet (its status GET failed).

The row stays unprocessed for the callback sweeps, marked ``unconfirmed`` so that rows never
tried are swept first: one merchant's broken MoMo key must not starve every merchant's
callbacks. After ``UNCONFIRMED_FOR`` it is given up (closed); its payment, payout or refund is
settled by its own status checks or a refresh.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import utcnow
from lipwa.store.tables import InboundCallback

log = structlog.get_logger("lipwa.callbacks")

UNCONFIRMED = "unconfirmed"
UNCONFIRMED_FOR = timedelta(hours=24)
# ORDER BY for the sweeps: rows never tried first, then oldest first.
UNTRIED_FIRST: tuple[Any, ...] = (InboundCallback.outcome.is_not(None), InboundCallback.id)


async def note_unconfirmed(sessions: async_sessionmaker[AsyncSession], callback_id: int) -> str:
    """Mark the row as tried (or give it up once too old); returns ``"unconfirmed"``."""
    now = utcnow()
    async with sessions() as session, session.begin():
        row = await session.get(InboundCallback, callback_id)
        if row is None or row.processed_at is not None:
            return UNCONFIRMED
        row.outcome = UNCONFIRMED
        if now - row.received_at >= UNCONFIRMED_FOR:
            row.detail = "MTN could not be asked about it for 24 h; given up"
            row.processed_at = now
            log.warning("callback_given_up", callback_id=callback_id)
        else:
            row.detail = "MTN could not be asked yet; the sweep asks again"
    return UNCONFIRMED
