"""The chaos test's database: its own PostgreSQL database (created and dropped here) or a
SQLite file; direct reads for the checks; and the PostgreSQL restart.

PostgreSQL URL: ``LIPWA_CHAOS_DATABASE_URL`` if set (its schema ``public`` is reset, the
database is left in place), else the suite's ``LIPWA_TEST_DATABASE_URL`` with the database
name ``<name>_chaos_<pid>``, created for the run and dropped after it — the suite's own
database is never touched, and two runs on one server never share a database.

Restart (``LIPWA_CHAOS_PG_RESTART``): ``cluster`` restarts the local server with
``pg_ctlcluster`` (or the command in ``LIPWA_CHAOS_PG_RESTART_CMD``); ``terminate`` kills every
connection to the chaos database and refuses new ones for a few seconds (what the gateway
sees of a restart, without disturbing other databases on a shared server); ``auto`` (the
default) is ``cluster`` when the server is local and ``pg_ctlcluster`` can restart it, else
``terminate``.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import text

from lipwa.store.db import make_engine

TERMINATE_DOWN_S = 3.0


def rows(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    """One read query (from synchronous code: its own event loop and engine)."""

    async def run() -> list[dict[str, Any]]:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                result = await conn.execute(text(sql), params)
                return [dict(row._mapping) for row in result]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def _admin(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(url, "postgres"), timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class ChaosDatabase:
    url: str
    owned: bool  # created here, dropped at the end

    @classmethod
    def for_postgres(cls, test_url: str) -> ChaosDatabase:
        explicit = os.environ.get("LIPWA_CHAOS_DATABASE_URL")
        if explicit:
            db = cls(explicit, owned=False)
            db._reset_schema()
            return db
        name = f"{database_name(test_url)}_chaos_{os.getpid()}"
        db = cls(with_database(test_url, name), owned=True)
        quoted = _quoted(name)
        asyncio.run(
            _admin(test_url, f"DROP DATABASE IF EXISTS {quoted}", f"CREATE DATABASE {quoted}")
        )
        return db

    def _reset_schema(self) -> None:
        async def reset() -> None:
            engine = make_engine(self.url, pool_size=1)
            try:
                async with engine.begin() as conn:
                    await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                    await conn.execute(text("CREATE SCHEMA public"))
            finally:
                await engine.dispose()

        asyncio.run(reset())

    def drop(self) -> None:
        if self.owned:
            quoted = _quoted(database_name(self.url))
            asyncio.run(_admin(self.url, f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))


async def _connects(url: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def wait_until_connectable(url: str, timeout_s: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if asyncio.run(_connects(url)):
            return True
        time.sleep(0.3)
    return False


def _local_cluster(url: str) -> list[str] | None:
    """``pg_ctlcluster … restart`` for the local cluster serving ``url``, if we may run it."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or not shutil.which("pg_ctlcluster"):
        return None
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    port = str(parts.port or 5432)
    listed = subprocess.run(
        ["pg_lsclusters", "-h"], capture_output=True, text=True, check=False, timeout=30
    )
    for line in listed.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == port:
            return ["pg_ctlcluster", "--skip-systemctl-redirect", fields[0], fields[1]]
    return None


@dataclass
class PgRestart:
    """Restarts PostgreSQL once, mid-run; ``ensure_up`` leaves it running whatever happened."""

    url: str
    mode: str  # cluster | terminate
    cluster: Sequence[str] | None = None  # pg_ctlcluster <version> <name>
    command: str | None = None  # LIPWA_CHAOS_PG_RESTART_CMD
    down_s: float = 0.0

    @classmethod
    def choose(cls, url: str) -> PgRestart:
        wanted = os.environ.get("LIPWA_CHAOS_PG_RESTART", "auto")
        command = os.environ.get("LIPWA_CHAOS_PG_RESTART_CMD")
        if wanted not in ("auto", "cluster", "terminate"):
            raise ValueError("LIPWA_CHAOS_PG_RESTART must be auto, cluster or terminate")
        if wanted == "terminate":
            return cls(url, "terminate")
        if command:
            return cls(url, "cluster", command=command)
        cluster = _local_cluster(url)
        if cluster is None and wanted == "cluster":
            raise RuntimeError("cannot restart PostgreSQL here: set LIPWA_CHAOS_PG_RESTART_CMD")
        return cls(url, "cluster", cluster=cluster) if cluster else cls(url, "terminate")

    def describe(self) -> str:
        if self.mode == "terminate":
            return "connections to the chaos database terminated and refused for a few seconds"
        return f"server restarted ({self.command or ' '.join([*(self.cluster or []), 'restart'])})"

    def restart(self) -> None:
        """Blocking: restart (or cut off) PostgreSQL, then wait until it takes connections."""
        started = time.monotonic()
        if self.mode == "terminate":
            self._terminate()
        elif self.command:
            subprocess.run(shlex.split(self.command), check=True, timeout=120)
        else:
            assert self.cluster is not None
            subprocess.run([*self.cluster, "restart"], check=True, timeout=120, capture_output=True)
        if not wait_until_connectable(self.url):
            raise RuntimeError("PostgreSQL did not come back within 90 s")
        self.down_s = time.monotonic() - started

    def _terminate(self) -> None:
        name = database_name(self.url)
        quoted = _quoted(name)
        literal = "'" + name.replace("'", "''") + "'"
        asyncio.run(
            _admin(
                self.url,
                f"ALTER DATABASE {quoted} ALLOW_CONNECTIONS false",
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = {literal} AND pid <> pg_backend_pid()",
            )
        )
        try:
            time.sleep(TERMINATE_DOWN_S)
        finally:
            asyncio.run(_admin(self.url, f"ALTER DATABASE {quoted} ALLOW_CONNECTIONS true"))

    def ensure_up(self) -> None:
        """Whatever happened, leave PostgreSQL running and the database open."""
        if self.mode == "cluster" and self.cluster is not None:
            if not wait_until_connectable(self.url, timeout_s=5):
                subprocess.run(
                    [*self.cluster, "start"], check=False, timeout=120, capture_output=True
                )
                wait_until_connectable(self.url, timeout_s=60)
        elif self.mode == "terminate":
            quoted = _quoted(database_name(self.url))
            try:
                asyncio.run(_admin(self.url, f"ALTER DATABASE {quoted} ALLOW_CONNECTIONS true"))
            except Exception as exc:  # best effort: report, never mask the test's own error
                print(f"chaos: could not re-open the database: {exc}")
