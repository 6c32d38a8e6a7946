"""The migrations build exactly the schema the code declares, and step down and up again: a
table, column or index added to the models without its migration fails here, not in service."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from lipwa.store.db import make_engine
from lipwa.store.migrate import alembic_config, head_revision, upgrade
from lipwa.store.tables import Base

PG_URL = os.environ.get("LIPWA_TEST_DATABASE_URL", "")


def _differences(url: str) -> list[Any]:
    def compare(sync: Connection) -> list[Any]:
        context = MigrationContext.configure(sync, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async def run() -> list[Any]:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _revision(url: str) -> str | None:
    async def run() -> str | None:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_revision()
                )
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _admin(url: str, sql: str) -> None:
    async def run() -> None:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    if not PG_URL.startswith("postgresql"):
        pytest.skip("PostgreSQL only (LIPWA_TEST_DATABASE_URL)")
    name = f"lipwa_migrations_{uuid.uuid4().hex[:8]}"  # never the suite's own database
    _admin(PG_URL, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _admin(PG_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_build_the_declared_schema_and_step_down_and_up(empty_database: str) -> None:
    upgrade(empty_database)
    assert _revision(empty_database) == head_revision()
    assert _differences(empty_database) == []

    command.downgrade(alembic_config(empty_database), "0001")
    assert _revision(empty_database) == "0001"
    upgrade(empty_database)
    assert _differences(empty_database) == []
