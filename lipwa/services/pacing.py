"""Pace calls to a provider: at most N per second per key, waiting (not failing) for a slot.

MTN caps MoMo status GETs at 10 per second (momo.md §4.2). The moving window lives where the
rate limits live: in Redis when ``LIPWA_REDIS_URL`` is set, so every worker process shares one
budget per account; in memory otherwise (one process: exact; N processes: N times the rate).
If Redis cannot be reached, each process paces on its own until it can (counted in
``lipwa_rate_limit_storage_errors_total``).
"""

from __future__ import annotations

import asyncio
import time

import structlog
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from lipwa.metrics import RATE_LIMIT_STORAGE_ERRORS

log = structlog.get_logger("lipwa.pacing")


class Pacer:
    def __init__(self, per_second: int, shared: Storage | None = None) -> None:
        self._item = RateLimitItemPerSecond(max(1, per_second))
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared = MovingWindowRateLimiter(shared) if shared is not None else None

    async def wait(self, key: str) -> None:
        """Return once a call for ``key`` fits in the window (and count it)."""
        while True:
            try:
                wait_s = await self._try(self._shared or self._local, key)
            except StorageError:
                RATE_LIMIT_STORAGE_ERRORS.inc()
                log.warning("pacing_storage_unavailable", exc_info=True)
                wait_s = await self._try(self._local, key)
            if wait_s is None:
                return
            await asyncio.sleep(wait_s)

    async def _try(self, limiter: MovingWindowRateLimiter, key: str) -> float | None:
        """None when the call may go now (counted), else how long to wait before asking again."""
        if await limiter.hit(self._item, "pace", key):
            return None
        stats = await limiter.get_window_stats(self._item, "pace", key)
        return max(stats.reset_time - time.time(), 0.005)
