"""Pooled PostgreSQL connections: one the server dropped is replaced, not handed to a request."""

from __future__ import annotations

import asyncio
import os

import pytest
from sqlalchemy import event, text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

from lipwa.store import db

URL = os.environ.get("LIPWA_TEST_DATABASE_URL", "")
pytestmark = pytest.mark.skipif(
    not URL.startswith("postgresql"), reason="PostgreSQL only (LIPWA_TEST_DATABASE_URL)"
)


async def _backend_pid(engine: db.AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


def test_connection_killed_by_the_server_is_replaced_on_checkout() -> None:
    async def scenario() -> tuple[int, int]:
        engine = db.make_engine(URL, pool_size=1, max_overflow=0)
        killer = db.make_engine(URL, pool_size=1, max_overflow=0)
        try:
            first = await _backend_pid(engine)  # now idle in the pool
            async with killer.connect() as conn:
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            await asyncio.sleep(0.3)  # the driver reads the server's goodbye
            return first, await _backend_pid(engine)  # would raise on the dead connection
        finally:
            await engine.dispose()
            await killer.dispose()

    first, second = asyncio.run(scenario())
    assert second != first


@pytest.mark.parametrize(("idle_after_s", "pings"), [(0.0, 2), (3600.0, 0)])
def test_only_a_connection_idle_long_enough_is_pinged(
    monkeypatch: pytest.MonkeyPatch, idle_after_s: float, pings: int
) -> None:
    monkeypatch.setattr(db, "PING_IDLE_AFTER_S", idle_after_s)
    pinged: list[AsyncAdapt_asyncpg_connection] = []
    original = AsyncAdapt_asyncpg_connection.ping

    def counting_ping(self: AsyncAdapt_asyncpg_connection) -> None:
        pinged.append(self)
        original(self)

    # Patched on the class: other engines alive in this process (servers run by other tests)
    # ping too, so only this engine's connections are counted.
    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counting_ping)
    ours: list[AsyncAdapt_asyncpg_connection] = []

    async def scenario() -> None:
        engine = db.make_engine(URL, pool_size=1, max_overflow=0)
        event.listen(engine.sync_engine, "connect", lambda dbapi, _record: ours.append(dbapi))
        try:
            for _ in range(3):  # the first checkout opens the connection: never pinged
                await _backend_pid(engine)
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    assert len(ours) == 1
    assert sum(1 for conn in pinged if conn is ours[0]) == pings
