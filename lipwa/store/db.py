"""Engines and sessions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int | None = None) -> AsyncEngine:
    """An engine; on PostgreSQL at most ``pool_size + max_overflow`` connections (size the sum
    of every process's pools below the server's ``max_connections``)."""
    if is_sqlite_url(url):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _serialise_sqlite_writes(engine)
        return engine
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
    )
    _replace_dead_connections(engine)
    return engine


# A pooled connection idle this long is pinged before use (a firewall or NAT may have dropped
# it without a word); a busier one is only checked for a close the driver already saw.
PING_IDLE_AFTER_S = 30.0


def _replace_dead_connections(engine: AsyncEngine) -> None:
    """A connection dropped by a database restart is replaced instead of failing a request.

    Like ``pool_pre_ping``, without its price: asyncpg's ping is three round trips (BEGIN,
    ``;``, ROLLBACK), about as much CPU as the statement it guards, on every checkout. A
    restart closes the sockets, which asyncpg notices at once (``is_closed``); only a
    connection idle for ``PING_IDLE_AFTER_S`` gets the full ping.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if dbapi_connection._connection.is_closed():
            raise exc.DisconnectionError("connection closed by the server")
        checked_in_at = record.info.get("checked_in_at")  # None: a brand-new connection
        if checked_in_at is not None and time.monotonic() - checked_in_at >= PING_IDLE_AFTER_S:
            try:
                dbapi_connection.ping()
            except Exception as error:
                raise exc.DisconnectionError(f"ping failed: {error}") from error


def _serialise_sqlite_writes(engine: AsyncEngine) -> None:
    """SQLite: WAL, and BEGIN IMMEDIATE so a transaction that reads then writes never fails
    with "database is locked" when another writer got there first: it waits instead."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
