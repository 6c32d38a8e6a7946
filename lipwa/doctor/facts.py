"""What the doctor reads from the database, in one short read-only session.

The checks are plain functions of these facts and the settings, so most of them are tested
without a database. No network call happens while the session is open.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.services.key_rotation import SealedRow, sealed_rows
from lipwa.store.db import make_engine, make_sessionmaker
from lipwa.store.migrate import current_revision, head_revision
from lipwa.store.tables import ApiKey, ProviderAccount, WebhookEndpoint, WorkerHeartbeat

RECENT_WORKER_S = 60.0


@dataclass
class Facts:
    dialect: str
    error: str | None = None  # the database could not be read: why (no secrets, no URL)
    revision: str | None = None
    head: str | None = None
    clock_skew_s: float | None = None  # database clock minus ours; None: same clock (SQLite)
    accounts: list[ProviderAccount] = field(default_factory=list)  # detached rows
    endpoints: list[WebhookEndpoint] = field(default_factory=list)
    sealed: list[SealedRow] = field(default_factory=list)
    live_keys: int = 0
    test_keys: int = 0
    last_heartbeat: datetime | None = None
    recent_workers: int = 0
    read_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def at_head(self) -> bool:
        return self.error is None and self.revision is not None and self.revision == self.head

    def active(self, environment: str) -> list[ProviderAccount]:
        return [a for a in self.accounts if a.environment == environment and a.status == "active"]

    @property
    def has_live_data(self) -> bool:
        return bool(self.live_keys or self.active("production"))

    @property
    def has_test_data(self) -> bool:
        return bool(self.test_keys or self.active("sandbox"))


async def load_facts(database_url: str) -> Facts:
    engine = make_engine(database_url, pool_size=1)
    facts = Facts(dialect=engine.dialect.name, head=head_revision())
    try:
        facts.revision = await current_revision(engine)
        async with make_sessionmaker(engine)() as session:
            facts.clock_skew_s = await _clock_skew(session, facts.dialect)
            if facts.at_head:
                await _read_rows(session, facts)
    except Exception as exc:  # the doctor reports, never raises
        facts.error = f"{type(exc).__name__}: {_first_line(exc)}"
    finally:
        await engine.dispose()
    return facts


async def _clock_skew(session: AsyncSession, dialect: str) -> float | None:
    if dialect == "sqlite":
        return None
    before = time.time()
    db_now = await session.scalar(text("SELECT now()"))
    after = time.time()
    if not isinstance(db_now, datetime):
        return None
    return float(db_now.timestamp() - (before + after) / 2)


async def _read_rows(session: AsyncSession, facts: Facts) -> None:
    facts.accounts = list(await session.scalars(select(ProviderAccount).order_by("id")))
    facts.endpoints = list(await session.scalars(select(WebhookEndpoint).order_by("id")))
    facts.sealed = await sealed_rows(session)
    keys = await session.execute(
        select(ApiKey.mode, func.count()).where(ApiKey.revoked_at.is_(None)).group_by(ApiKey.mode)
    )
    by_mode = {str(mode): int(n) for mode, n in keys.all()}
    facts.live_keys, facts.test_keys = by_mode.get("live", 0), by_mode.get("test", 0)
    beats = list(await session.scalars(select(WorkerHeartbeat.last_seen_at)))
    facts.last_heartbeat = max(beats, default=None)
    since = facts.read_at - timedelta(seconds=RECENT_WORKER_S)
    facts.recent_workers = sum(1 for b in beats if b >= since)


def _first_line(exc: Exception) -> str:
    # Driver messages can quote the URL; keep the first line and never the password.
    line = str(exc).splitlines()[0] if str(exc) else ""
    return line[:200]
