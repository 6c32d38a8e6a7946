"""The migrations build exactly the schema the code declares, and step down and up again: a
table, column or index added to the models without its migration fails here, not in service."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from lipwa.store.db import make_engine
from lipwa.store.migrate import alembic_config, head_revision, upgrade
from lipwa.store.tables import Base
from tests.ops_support import fresh_database, postgres_base_url


def _inspect(url: str) -> tuple[str | None, list[Any]]:
    """The database's revision, and how its schema differs from the declared one."""

    def read(sync: Connection) -> tuple[str | None, list[Any]]:
        context = MigrationContext.configure(sync, opts={"compare_type": True})
        return context.get_current_revision(), list(compare_metadata(context, Base.metadata))

    async def run() -> tuple[str | None, list[Any]]:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    sqlite = request.param == "sqlite"
    if not sqlite and postgres_base_url() is None:
        pytest.skip("PostgreSQL only (LIPWA_TEST_DATABASE_URL)")
    with fresh_database(tmp_path, sqlite=sqlite, migrated=False) as url:
        yield url


def test_migrations_build_the_declared_schema_and_step_down_and_up(empty_database: str) -> None:
    upgrade(empty_database)
    assert _inspect(empty_database) == (head_revision(), [])

    command.downgrade(alembic_config(empty_database), "0001")
    assert _inspect(empty_database)[0] == "0001"
    upgrade(empty_database)
    assert _inspect(empty_database) == (head_revision(), [])
