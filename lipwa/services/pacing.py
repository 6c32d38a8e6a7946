"""Pace calls to a provider: at most N per second per key, waiting (not failing) for a slot.

MTN caps MoMo status GETs at 10 per second (momo.md §4.2). This is a moving window kept in
memory, so it holds per process: N worker processes may together make N times the rate
(run one worker per MoMo account's traffic, or share counters through Redis, to be strict).
"""

from __future__ import annotations

import asyncio
import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter


class Pacer:
    def __init__(self, per_second: int) -> None:
        self._item = RateLimitItemPerSecond(max(1, per_second))
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def wait(self, key: str) -> None:
        """Return once a call for ``key`` fits in the window (and count it)."""
        while not await self._limiter.hit(self._item, key):
            stats = await self._limiter.get_window_stats(self._item, key)
            await asyncio.sleep(max(stats.reset_time - time.time(), 0.005))
