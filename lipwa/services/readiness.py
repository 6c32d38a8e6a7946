"""Small probes shared by /health/ready and ``lipwa doctor``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import utcnow
from lipwa.store.tables import WorkerHeartbeat


async def ping_redis(url: str, timeout_s: float = 2.0) -> None:
    """Raise unless Redis at ``url`` answers PING within ``timeout_s``."""
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def heartbeat_age_s(session: AsyncSession, now: datetime | None = None) -> float | None:
    """Seconds since the newest worker heartbeat; None when no worker ever ran."""
    last = await session.scalar(select(func.max(WorkerHeartbeat.last_seen_at)))
    if last is None:
        return None
    if isinstance(last, str):  # SQLite aggregates skip the column type
        last = datetime.fromisoformat(last)
    if last.tzinfo is None:
        from datetime import UTC

        last = last.replace(tzinfo=UTC)
    return ((now or utcnow()) - last).total_seconds()
