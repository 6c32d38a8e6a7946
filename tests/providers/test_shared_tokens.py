"""OAuth tokens shared through Redis: several processes (here: several caches, each with its
own connection) fetch one token per account between them, never store it in clear, drop only
the token the provider refused, and go on with tokens of their own when Redis is down."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from lipwa.providers.shared_tokens import SharedTokens
from lipwa.providers.tokens import TokenCache
from lipwa.vault import KeyRing, Vault, generate_key_text

REDIS_URL = os.environ.get("LIPWA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
VAULT = Vault(KeyRing.parse(generate_key_text("v1")))


class WallClock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


class Issuer:
    """The provider's token endpoint: counts fetches; each token is new."""

    def __init__(self, expires_in: float = 3599.0, delay: float = 0.05) -> None:
        self.fetches = 0
        self.expires_in = expires_in
        self.delay = delay

    async def fetch(self) -> tuple[str, float]:
        self.fetches += 1
        number = self.fetches
        await asyncio.sleep(self.delay)
        return f"secret-token-{number}-{uuid.uuid4().hex}", self.expires_in


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception:
        await client.aclose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required in CI ({REDIS_URL})")
        pytest.skip(f"no Redis at {REDIS_URL}")
    name = f"lipwa-test-{uuid.uuid4().hex[:12]}"
    yield name
    async for key in client.scan_iter(match=f"{name}*"):
        await client.delete(key)
    await client.aclose()


def process(prefix: str, wall: WallClock | None = None) -> TokenCache:
    """One process's cache: its own Redis connection, the shared store."""
    shared = SharedTokens(Redis.from_url(REDIS_URL), VAULT, prefix, wall_clock=wall or time.time)
    return TokenCache(shared=shared)


async def test_processes_fetch_one_token_between_them(prefix: str) -> None:
    processes = [process(prefix) for _ in range(4)]
    issuer = Issuer()
    try:
        tokens = await asyncio.gather(
            *(p.get("acct_one", issuer.fetch) for p in processes for _ in range(10))
        )
        assert issuer.fetches == 1
        assert len(set(tokens)) == 1
        # a process that starts later takes the stored token too
        late = process(prefix)
        processes.append(late)
        assert await late.get("acct_one", issuer.fetch) == tokens[0]
        assert issuer.fetches == 1
        # another account has a token of its own
        other = await processes[0].get("acct_two", issuer.fetch)
        assert other != tokens[0] and issuer.fetches == 2
    finally:
        for p in processes:
            await p.close()


async def test_the_token_is_never_stored_in_clear(prefix: str) -> None:
    cache, issuer = process(prefix), Issuer()
    client = Redis.from_url(REDIS_URL)
    try:
        token = await cache.get("acct_one", issuer.fetch)
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        assert len(keys) == 1  # the token; the fetch lock is gone
        (key,) = keys
        value = await client.get(key)
        assert value is not None and token.encode() not in value
        assert b"acct_one" not in key
        # and Redis forgets it when the token expires
        assert 3_500_000 < await client.pttl(key) <= 3_599_000
    finally:
        await client.aclose()
        await cache.close()


async def test_a_refused_token_is_replaced_once_for_everyone(prefix: str) -> None:
    a, b, issuer = process(prefix), process(prefix), Issuer()
    try:
        old = await a.get("acct_one", issuer.fetch)
        assert await b.get("acct_one", issuer.fetch) == old
        await a.invalidate("acct_one", old)  # the provider said "invalid token" to a
        new = await a.get("acct_one", issuer.fetch)
        assert new != old and issuer.fetches == 2
        # b is refused the old token too: it drops its copy, and takes a's new one
        await b.invalidate("acct_one", old)
        assert await b.get("acct_one", issuer.fetch) == new
        assert issuer.fetches == 2
        # a late report about the old token must not throw the new one away
        await b.invalidate("acct_one", old)
        assert await process(prefix).get("acct_one", issuer.fetch) == new
        assert issuer.fetches == 2
    finally:
        await a.close()
        await b.close()


async def test_a_token_due_for_refresh_is_refreshed_once(prefix: str) -> None:
    wall = WallClock()
    a, b, issuer = process(prefix, wall), process(prefix, wall), Issuer(expires_in=3599)
    try:
        first = await a.get("acct_one", issuer.fetch)
        wall.now += 3599 - 100  # inside the refresh margin (300 s) for every process
        c = process(prefix, wall)  # no copy of its own: reads the store, finds it due
        try:
            second = await c.get("acct_one", issuer.fetch)
        finally:
            await c.close()
        assert second != first and issuer.fetches == 2
        assert await b.get("acct_one", issuer.fetch) == second
        assert issuer.fetches == 2
    finally:
        await a.close()
        await b.close()


def errors() -> float:
    return REGISTRY.get_sample_value("lipwa_token_store_errors_total") or 0.0


async def test_without_redis_each_process_fetches_its_own() -> None:
    # nothing listens on port 1: every Redis call fails at once
    shared = SharedTokens(Redis.from_url("redis://127.0.0.1:1/0"), VAULT, "lipwa-test-down")
    cache, issuer = TokenCache(shared=shared), Issuer()
    before = errors()
    try:
        token = await cache.get("acct_one", issuer.fetch)
        assert token.startswith("secret-token-1")
        assert await cache.get("acct_one", issuer.fetch) == token  # kept in the process
        await cache.invalidate("acct_one", token)
        assert await cache.get("acct_one", issuer.fetch) != token
    finally:
        await cache.close()
    assert issuer.fetches == 2
    assert errors() >= before + 2
