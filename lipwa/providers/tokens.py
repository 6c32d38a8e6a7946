"""Per-account OAuth token cache with single-flight refresh.

One cached token per key (a provider account). When the token is missing or close to expiry,
exactly one ``fetch`` runs per key however many callers ask at once; the others wait for its
result. A fetch error is shared by the callers of that flight; if the old token has not
expired yet it is still handed out (refreshing early is an optimisation, not a requirement).

A Redis-shared variant can implement the same two methods later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Fetch = Callable[[], Awaitable[tuple[str, float]]]


@dataclass(frozen=True)
class _Entry:
    token: str
    refresh_at: float  # clock value after which a new token is fetched
    expires_at: float  # clock value after which the token is never handed out

    def __repr__(self) -> str:  # the token is a secret
        return f"_Entry(refresh_at={self.refresh_at!r}, expires_at={self.expires_at!r})"


class TokenCache:
    """Per-account OAuth token cache with single-flight refresh.

    ``get(key, fetch)`` returns a cached token, or calls ``fetch`` (one call at a time per key,
    even with many concurrent callers) which returns ``(token, expires_in_seconds)``.
    Tokens are refreshed ``refresh_margin`` seconds before they expire; for short-lived tokens
    the margin is capped at half the lifetime so a token is always used for a while.
    ``invalidate(key, token)`` drops the token after the provider called it invalid, but only
    if it is still the cached one (another caller may already have replaced it).
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, refresh_margin: float = 300.0
    ) -> None:
        self._clock = clock
        self._margin = max(0.0, refresh_margin)
        self._entries: dict[str, _Entry] = {}
        self._flights: dict[str, asyncio.Future[str]] = {}

    async def get(self, key: str, fetch: Fetch) -> str:
        entry = self._entries.get(key)
        if entry is not None and self._clock() < entry.refresh_at:
            return entry.token
        flight = self._flights.get(key)
        if flight is None or flight.get_loop() is not asyncio.get_running_loop():
            # (a flight left behind by a closed event loop is ignored, not awaited)
            flight = asyncio.ensure_future(self._refresh(key, fetch))
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._land(key, done))
        try:
            # shield: a cancelled caller must not cancel the fetch the others wait for
            return await asyncio.shield(flight)
        except Exception:
            if (
                entry is not None
                and self._entries.get(key) is entry
                and self._clock() < entry.expires_at
            ):
                return entry.token
            raise

    def invalidate(self, key: str, token: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.token == token:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    async def _refresh(self, key: str, fetch: Fetch) -> str:
        token, expires_in = await fetch()
        now = self._clock()
        lifetime = max(0.0, float(expires_in))
        margin = min(self._margin, lifetime / 2)
        self._entries[key] = _Entry(token, now + lifetime - margin, now + lifetime)
        return token

    def _land(self, key: str, done: asyncio.Future[str]) -> None:
        if self._flights.get(key) is done:
            del self._flights[key]
        if not done.cancelled():
            done.exception()  # mark retrieved: the waiters got it (or nobody is left to care)
