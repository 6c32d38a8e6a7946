"""Helpers for the operations tests (doctor, keys, metrics): a fresh database per test and
seed data written through the real services.

SQLite by default; when LIPWA_TEST_DATABASE_URL names PostgreSQL, each database is a new
PostgreSQL database on that server (dropped afterwards), so these tests never touch the
schema the gateway tests share.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import utcnow
from lipwa.services import accounts
from lipwa.services.accounts import AccountIn, Caller, MerchantIn
from lipwa.store.db import make_engine, make_sessionmaker
from lipwa.store.migrate import upgrade
from lipwa.store.tables import IdempotencyKey, WorkerHeartbeat
from lipwa.vault import KeyRing, Vault

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
ALERT_RULES = ROOT / "deploy" / "prometheus" / "lipwa-alerts.yml"


def _pg_admin(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def postgres_base_url() -> str | None:
    url = os.environ.get("LIPWA_TEST_DATABASE_URL", "")
    return url if url.startswith("postgresql") else None


@contextmanager
def fresh_database(
    tmp_path: Path, *, postgres: str | None = None, sqlite: bool = False, migrated: bool = True
) -> Iterator[str]:
    """A migrated (unless not ``migrated``), empty database: SQLite when ``sqlite``, else
    PostgreSQL when ``postgres`` (a server URL) or LIPWA_TEST_DATABASE_URL names one."""
    base = None if sqlite else postgres or postgres_base_url()
    if base is None:
        url = f"sqlite+aiosqlite:///{tmp_path / f'ops-{uuid.uuid4().hex[:8]}.db'}"
        if migrated:
            upgrade(url)
        yield url
        return
    import asyncpg

    name = f"lipwa_ops_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_pg_admin(base))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        if migrated:
            upgrade(url)
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run_db(url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction (from synchronous test code)."""

    async def main() -> T:
        engine = make_engine(url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def vault_of(ring: str) -> Vault:
    return Vault(KeyRing.parse(ring))


MPESA_CREDENTIALS = {
    "consumer_key": "ck-seed-0001",
    "consumer_secret": "cs-seed-0001",
    "shortcode": "174379",
    "kind": "paybill",
    "passkey": "pk-seed-0001",
}


async def add_merchant(session: AsyncSession, name: str = "Shop") -> str:
    merchant = await accounts.create_merchant(session, MerchantIn(name=name))
    return merchant.id


async def add_account(
    session: AsyncSession,
    vault: Vault,
    merchant_id: str,
    *,
    environment: str = "sandbox",
    base_url: str | None = None,
    provider: str = "mpesa",
    credentials: dict[str, Any] | None = None,
) -> str:
    account = await accounts.create_account(
        session,
        vault,
        merchant_id,
        AccountIn.model_validate(
            {
                "provider": provider,
                "environment": environment,
                "base_url": base_url,
                "credentials": credentials or MPESA_CREDENTIALS,
            }
        ),
    )
    return account.id


async def add_endpoint(session: AsyncSession, vault: Vault, merchant_id: str, mode: str) -> str:
    from lipwa.services.webhook_endpoints import EndpointIn, create_endpoint

    caller = Caller(merchant_id=merchant_id, mode=mode, key_id="key_seed")
    url = "https://hooks.example.com/lipwa" if mode == "live" else "http://127.0.0.1:9/hook"
    endpoint, _secret = await create_endpoint(
        session, vault, caller, EndpointIn.model_validate({"url": url, "event_types": ["*"]})
    )
    return endpoint.id


async def add_idempotent_answer(
    session: AsyncSession, vault: Vault, merchant_id: str, key: str, secret: str
) -> None:
    bound = f"idempotency:{merchant_id}:{key}"
    session.add(
        IdempotencyKey(
            merchant_id=merchant_id,
            key=key,
            method_path="POST /v1/webhook_endpoints",
            request_hash="0" * 64,
            state="done",
            response_status=200,
            response_body={"id": "we_x", "secret": vault.seal({"secret": secret}, bound)},
            created_at=utcnow(),
        )
    )


async def add_heartbeat(session: AsyncSession, age_s: float = 1.0) -> None:
    seen: datetime = utcnow() - timedelta(seconds=age_s)
    session.add(
        WorkerHeartbeat(
            worker_id=f"host:{uuid.uuid4().hex[:6]}", started_at=seen, last_seen_at=seen, detail={}
        )
    )
