"""Per-account OAuth token cache with single-flight refresh.

One cached token per key (a provider account). When the token is missing or close to expiry,
exactly one ``fetch`` runs per key however many callers ask at once; the others wait for its
result. A fetch error is shared by the callers of that flight; if the old token has not
expired yet it is still handed out (refreshing early is an optimisation, not a requirement).

With ``shared`` (Redis, ``lipwa.providers.shared_tokens``) the processes share one token per
account: a refresh first looks there, and only the process holding the fetch lock asks the
provider. Each process still keeps its copy, so a request costs no Redis round trip. If Redis
cannot be reached, the process fetches its own token, as without Redis: payments never wait
on the token store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from redis.exceptions import RedisError

from lipwa.metrics import TOKEN_STORE_ERRORS
from lipwa.providers.shared_tokens import SharedToken, SharedTokens

log = structlog.get_logger("lipwa.tokens")

Fetch = Callable[[], Awaitable[tuple[str, float]]]

# How long the process fetching a shared token may hold the lock (a token call's timeouts are
# well inside it), and how often the others look whether it has landed.
FETCH_LOCK_S = 30.0
LANDED_POLL_S = 0.05


@dataclass(frozen=True)
class _Entry:
    token: str
    refresh_at: float  # clock value after which a new token is fetched
    expires_at: float  # clock value after which the token is never handed out
    shared_raw: bytes | None = None  # the Redis entry it came from or went to

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
        self,
        clock: Callable[[], float] = time.monotonic,
        refresh_margin: float = 300.0,
        shared: SharedTokens | None = None,
    ) -> None:
        self._clock = clock
        self._margin = max(0.0, refresh_margin)
        self._shared = shared
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

    async def invalidate(self, key: str, token: str) -> None:
        entry = self._entries.get(key)
        if entry is None or entry.token != token:
            return
        del self._entries[key]
        if self._shared is not None and entry.shared_raw is not None:
            try:
                await self._shared.drop(key, entry.shared_raw)
            except RedisError:
                self._store_failed("drop")

    def clear(self) -> None:
        self._entries.clear()

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()

    async def _refresh(self, key: str, fetch: Fetch) -> str:
        if self._shared is not None:
            try:
                return await self._refresh_shared(self._shared, key, fetch)
            except RedisError:
                self._store_failed("read")
        return await self._fetch_here(key, fetch)

    async def _fetch_here(self, key: str, fetch: Fetch) -> str:
        token, expires_in = await fetch()
        self._keep(key, self._minted(token, expires_in, self._clock()))
        return token

    async def _refresh_shared(self, shared: SharedTokens, key: str, fetch: Fetch) -> str:
        """The token another process stored, or one this process fetches under the lock."""
        deadline = self._clock() + FETCH_LOCK_S
        while True:
            stored = await self._fresh(shared, key)
            if stored is not None:
                return stored
            owner = await shared.lock(key, FETCH_LOCK_S)
            if owner is not None:
                try:
                    stored = await self._fresh(shared, key)  # landed while we asked
                    return stored or await self._fetch_for_all(shared, key, fetch)
                finally:
                    with contextlib.suppress(RedisError):  # else it lapses by itself
                        await shared.unlock(key, owner)
            if self._clock() >= deadline:  # the holder is stuck: do without it
                return await self._fetch_here(key, fetch)
            await asyncio.sleep(LANDED_POLL_S)

    async def _fetch_for_all(self, shared: SharedTokens, key: str, fetch: Fetch) -> str:
        token, expires_in = await fetch()
        minted = self._minted(token, expires_in, shared.wall_clock())
        try:
            raw = await shared.write(key, minted)
        except RedisError:  # the token is good: keep it here, the others fetch their own
            self._store_failed("write")
            raw = None
        self._keep(key, minted, raw, wall_clock=True)
        return token

    async def _fresh(self, shared: SharedTokens, key: str) -> str | None:
        found = await shared.read(key)
        if found is None or shared.wall_clock() >= found[0].refresh_at:
            return None
        self._keep(key, found[0], found[1], wall_clock=True)
        return found[0].token

    def _minted(self, token: str, expires_in: float, now: float) -> SharedToken:
        lifetime = max(0.0, float(expires_in))
        margin = min(self._margin, lifetime / 2)
        return SharedToken(token, now + lifetime - margin, now + lifetime)

    def _keep(
        self, key: str, minted: SharedToken, raw: bytes | None = None, wall_clock: bool = False
    ) -> None:
        """Cache ``minted`` here; times on the shared wall clock are turned into ours."""
        offset = 0.0
        if wall_clock and self._shared is not None:
            offset = self._clock() - self._shared.wall_clock()
        self._entries[key] = _Entry(
            minted.token, minted.refresh_at + offset, minted.expires_at + offset, raw
        )

    def _store_failed(self, action: str) -> None:
        TOKEN_STORE_ERRORS.inc()
        log.warning("token_store_unavailable", action=action, exc_info=True)

    def _land(self, key: str, done: asyncio.Future[str]) -> None:
        if self._flights.get(key) is done:
            del self._flights[key]
        if not done.cancelled():
            done.exception()  # mark retrieved: the waiters got it (or nobody is left to care)
