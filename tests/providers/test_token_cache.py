"""TokenCache: single flight, early refresh, targeted invalidation."""

from __future__ import annotations

import asyncio

import pytest

from lipwa.providers.tokens import TokenCache, _Entry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Issuer:
    """A token endpoint: counts fetches, optionally slow or failing."""

    def __init__(self, expires_in: float = 3600.0, delay: float = 0.0) -> None:
        self.fetches = 0
        self.expires_in = expires_in
        self.delay = delay
        self.fail_next = False

    async def fetch(self) -> tuple[str, float]:
        self.fetches += 1
        number = self.fetches
        await asyncio.sleep(self.delay)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("token endpoint down")
        return f"token-{number}", self.expires_in


async def test_fifty_concurrent_callers_cause_one_fetch() -> None:
    cache, issuer = TokenCache(), Issuer(delay=0.01)
    results = await asyncio.gather(*(cache.get("acct", issuer.fetch) for _ in range(50)))
    assert issuer.fetches == 1
    assert set(results) == {"token-1"}


async def test_keys_are_independent() -> None:
    cache, issuer = TokenCache(), Issuer(delay=0.01)
    results = await asyncio.gather(cache.get("a", issuer.fetch), cache.get("b", issuer.fetch))
    assert issuer.fetches == 2
    assert results == ["token-1", "token-2"]


async def test_refreshes_margin_seconds_before_expiry() -> None:
    clock, issuer = Clock(), Issuer(expires_in=3599)
    cache = TokenCache(clock=clock, refresh_margin=300)
    assert await cache.get("acct", issuer.fetch) == "token-1"
    clock.now += 3599 - 300 - 1
    assert await cache.get("acct", issuer.fetch) == "token-1"
    clock.now += 1
    assert await cache.get("acct", issuer.fetch) == "token-2"
    assert issuer.fetches == 2


async def test_short_lived_tokens_are_still_reused_for_half_their_life() -> None:
    clock, issuer = Clock(), Issuer(expires_in=60)
    cache = TokenCache(clock=clock, refresh_margin=300)
    await cache.get("acct", issuer.fetch)
    clock.now += 29
    assert await cache.get("acct", issuer.fetch) == "token-1"
    clock.now += 1
    assert await cache.get("acct", issuer.fetch) == "token-2"


async def test_invalidate_drops_only_the_token_that_was_refused() -> None:
    cache, issuer = TokenCache(), Issuer()
    stale = await cache.get("acct", issuer.fetch)
    await cache.invalidate("acct", stale)
    fresh = await cache.get("acct", issuer.fetch)
    assert fresh == "token-2"
    # a slower caller reports the old token as invalid: the new one must survive
    await cache.invalidate("acct", stale)
    assert await cache.get("acct", issuer.fetch) == "token-2"
    assert issuer.fetches == 2
    await cache.invalidate("other-account", fresh)
    assert await cache.get("acct", issuer.fetch) == "token-2"


async def test_a_failed_fetch_is_shared_and_not_cached() -> None:
    cache, issuer = TokenCache(), Issuer(delay=0.01)
    issuer.fail_next = True
    results = await asyncio.gather(
        *(cache.get("acct", issuer.fetch) for _ in range(10)), return_exceptions=True
    )
    assert issuer.fetches == 1
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await cache.get("acct", issuer.fetch) == "token-2"


async def test_a_failed_early_refresh_keeps_serving_the_unexpired_token() -> None:
    clock, issuer = Clock(), Issuer(expires_in=3600)
    cache = TokenCache(clock=clock, refresh_margin=300)
    await cache.get("acct", issuer.fetch)
    clock.now += 3400  # inside the refresh margin, not expired
    issuer.fail_next = True
    assert await cache.get("acct", issuer.fetch) == "token-1"
    clock.now += 300  # now expired: a failure must surface
    issuer.fail_next = True
    with pytest.raises(RuntimeError):
        await cache.get("acct", issuer.fetch)


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch() -> None:
    cache, issuer = TokenCache(), Issuer(delay=0.05)
    first = asyncio.create_task(cache.get("acct", issuer.fetch))
    second = asyncio.create_task(cache.get("acct", issuer.fetch))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == "token-1"
    assert issuer.fetches == 1


def test_repr_never_shows_tokens() -> None:
    assert "secret-token" not in repr(_Entry("secret-token", 1.0, 2.0))
