"""MoMo status pacing: one budget per account across processes sharing Redis, and pacing per
process (never none) while Redis cannot be reached."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator

import pytest
from limits.aio.storage import RedisStorage
from prometheus_client import REGISTRY

from lipwa.services.pacing import Pacer

REDIS_URL = os.environ.get("LIPWA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def storage(url: str, prefix: str) -> RedisStorage:
    return RedisStorage(
        f"async+{url}", implementation="redispy", key_prefix=prefix, wrap_exceptions=True
    )


@pytest.fixture
def prefix() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required in CI ({REDIS_URL})")
        pytest.skip(f"no Redis at {REDIS_URL}")
    name = f"lipwa-test-{uuid.uuid4().hex[:12]}"
    yield name
    for key in client.scan_iter(match=f"{name}*"):
        client.delete(key)


async def paced(pacers: list[Pacer], calls_each: int) -> list[float]:
    """Every pacer makes ``calls_each`` calls for one account at once; when each call went."""
    start = time.monotonic()
    went: list[float] = []

    async def call(pacer: Pacer) -> None:
        await pacer.wait("acct_one")
        went.append(time.monotonic() - start)

    await asyncio.gather(*(call(p) for p in pacers for _ in range(calls_each)))
    return sorted(went)


def most_in_one_second(went: list[float]) -> int:
    # 0.9 s: a slot freed at exactly +1 s is seen a few ms late by the clock here
    return max(sum(1 for t in went if s <= t < s + 0.9) for s in went)


def test_processes_sharing_redis_share_one_budget_per_account(prefix: str) -> None:
    async def run() -> list[float]:
        # Two workers (each its own Pacer and connection), 10 per second between them.
        return await paced([Pacer(10, storage(REDIS_URL, prefix)) for _ in range(2)], 15)

    errors = "lipwa_rate_limit_storage_errors_total"
    before = REGISTRY.get_sample_value(errors) or 0.0
    went = asyncio.run(run())
    failed = (REGISTRY.get_sample_value(errors) or 0.0) - before
    assert len(went) == 30
    # per process, it would be 20 (what Redis errors fall back to: said if it happens)
    assert most_in_one_second(went) <= 10, f"{failed:g} Redis errors during the run"
    assert went[-1] >= 2.0  # 30 calls at 10/s: the last waits for the third second


def test_without_redis_each_process_still_paces(prefix: str) -> None:
    before = REGISTRY.get_sample_value("lipwa_rate_limit_storage_errors_total") or 0.0

    async def run() -> list[float]:
        return await paced([Pacer(10, storage("redis://127.0.0.1:1/0", prefix))], 15)

    went = asyncio.run(run())
    assert most_in_one_second(went) <= 10 and went[-1] >= 1.0
    after = REGISTRY.get_sample_value("lipwa_rate_limit_storage_errors_total") or 0.0
    assert after - before >= 15
