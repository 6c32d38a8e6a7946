"""The gateway under test: real HTTP, a real database, the simulator on loopback.

The database is SQLite unless LIPWA_TEST_DATABASE_URL names another (CI runs the suite once
more with PostgreSQL). The simulator and the gateway each run in their own thread and event
loop, like separate processes, and talk to each other over 127.0.0.1.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lipwa.api.app import create_app
from lipwa.config import Settings
from lipwa.simulator.app import build_app
from lipwa.simulator.core import SimSettings, Simulator
from lipwa.simulator.testing import free_port, serve_in_thread
from lipwa.vault import generate_key_text

ADMIN_TOKEN = "test-admin-token-" + uuid.uuid4().hex


def _reset_postgres(url: str) -> None:
    import asyncio

    from sqlalchemy import text

    from lipwa.store.db import make_engine

    async def drop() -> None:
        engine = make_engine(url, pool_size=1)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    asyncio.run(drop())


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    from lipwa.store.migrate import upgrade

    url = os.environ.get("LIPWA_TEST_DATABASE_URL") or None
    if url is None:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'lipwa.db'}"
    elif url.startswith("postgresql"):
        _reset_postgres(url)
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def simulator() -> Iterator[tuple[str, Simulator]]:
    sim = Simulator(
        seed=7, settings=SimSettings(prompt_seconds=0.2, momo_callback_host="127.0.0.1")
    )
    with serve_in_thread(build_app(sim)) as url:
        yield url, sim


@pytest.fixture
def sim(simulator: tuple[str, Simulator]) -> Iterator[Simulator]:
    """The simulator, reset after each test (faults, overrides, records)."""
    url, instance = simulator
    yield instance
    httpx.post(f"{url}/_sim/reset").raise_for_status()
    instance.settings.prompt_seconds = 0.2


@pytest.fixture
def sim_url(simulator: tuple[str, Simulator]) -> str:
    return simulator[0]


@dataclass
class Gateway:
    url: str
    settings: Settings
    log_path: Path

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
        )

    def client(self, api_key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        )


@pytest.fixture(scope="session")
def gateway(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    from lipwa.observability import configure_logging

    port = free_port()
    log_path = tmp_path_factory.mktemp("logs") / "gateway.log"
    settings = Settings(
        database_url=database_url,
        public_url=f"http://127.0.0.1:{port}",
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        encryption_keys=generate_key_text("v1"),  # type: ignore[arg-type]
        first_check_after_s=5,
        provider_read_timeout_s=2.0,
        idempotency_wait_s=20,
        # Guards (docs/guards.md): the suite pays the same phone, amount and reference many
        # times a second, so the guards are loosened here, not in the production defaults;
        # tests/gateway/test_guards.py tightens them per merchant and runs the defaults.
        rate_limit_api_key="1000/second",
        rate_limit_prompts="1000/minute",
        payer_lock_s=0,
        same_amount_window_s=0,
        duplicate_window_s=0,
        # Recovery runs in the gateway, on a short schedule (first check after 5 s: later than
        # any callback the fault tests delay). Webhook tests run their own delivery job.
        worker_jobs="payment_checks,callback_sweep,payout_checks,refund_checks,money_callback_sweep",
        check_backoff_initial_s=0.5,
        check_backoff_max_s=2.0,
        stale_send_after_s=15.0,  # longer than a MoMo send with its retries
        circuit_cooldown_s=1.0,
    )
    with log_path.open("a") as log_file:
        configure_logging("INFO", json_output=True, stream=log_file)
        with serve_in_thread(create_app(settings), port=port) as url:
            yield Gateway(url=url, settings=settings, log_path=log_path)


@dataclass
class Merchant:
    id: str
    api_key: str
    accounts: dict[str, dict[str, Any]]
    gateway: Gateway

    def client(self) -> httpx.Client:
        return self.gateway.client(self.api_key)

    def pay(self, client: httpx.Client | None = None, **body: Any) -> httpx.Response:
        headers = {"Idempotency-Key": body.pop("idempotency_key", str(uuid.uuid4()))}
        payload = {"reference": "order-1", **body}
        c = client or self.client()
        return c.post("/v1/payments", json=payload, headers=headers)

    def wait_final(self, payment_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while True:
                payment: dict[str, Any] = c.get(f"/v1/payments/{payment_id}").json()
                if payment["status"] in {"succeeded", "failed"} or time.monotonic() > deadline:
                    return payment
                time.sleep(0.05)


def create_merchant(
    gateway: Gateway,
    sim_url: str,
    *,
    mode: str = "test",
    momo_currency: str = "EUR",
    settings: dict[str, Any] | None = None,
) -> Merchant:
    creds = httpx.get(f"{sim_url}/_sim/credentials").json()
    mpesa, momo = creds["mpesa"], creds["momo"]
    environment = "sandbox" if mode == "test" else "production"
    with gateway.admin() as admin:
        merchant = admin.post(
            "/admin/v1/merchants", json={"name": "Test shop", "settings": settings or {}}
        ).json()
        accounts = {}
        accounts["mpesa"] = admin.post(
            f"/admin/v1/merchants/{merchant['id']}/accounts",
            json={
                "provider": "mpesa",
                "environment": environment,
                "base_url": sim_url,
                "credentials": {
                    "consumer_key": mpesa["consumer_key"],
                    "consumer_secret": mpesa["consumer_secret"],
                    "shortcode": mpesa["paybill"]["shortcode"],
                    "kind": "paybill",
                    "passkey": mpesa["paybill"]["passkey"],
                    # B2C and reversals (tests/gateway/test_payouts.py, test_refunds.py)
                    "initiator_name": mpesa["b2c"]["initiator_name"],
                    "initiator_password": mpesa["b2c"]["initiator_password"],
                    "certificate_pem": mpesa["b2c"]["certificate_pem"],
                    "b2c_shortcode": mpesa["b2c"]["shortcode"],
                },
            },
        ).json()
        target = {"EUR": "sandbox", "RWF": "mtnrwanda", "UGX": "mtnuganda"}[momo_currency]
        accounts["momo"] = admin.post(
            f"/admin/v1/merchants/{merchant['id']}/accounts",
            json={
                "provider": "momo",
                "environment": environment,
                "base_url": sim_url,
                "credentials": {
                    "api_user": momo["api_user"],
                    "api_key": momo["api_key"],
                    "subscription_keys": momo["subscription_keys"],
                    "target_environment": target,
                    "currency": momo_currency,
                },
            },
        ).json()
        key = admin.post(
            f"/admin/v1/merchants/{merchant['id']}/api-keys", json={"mode": mode}
        ).json()
    return Merchant(id=merchant["id"], api_key=key["key"], accounts=accounts, gateway=gateway)


def add_till_account(gateway: Gateway, merchant_id: str, sim_url: str) -> dict[str, Any]:
    """A sandbox M-Pesa till (Buy Goods) account on the simulator's demo till; the account."""
    creds = httpx.get(f"{sim_url}/_sim/credentials").json()["mpesa"]
    with gateway.admin() as admin:
        response = admin.post(
            f"/admin/v1/merchants/{merchant_id}/accounts",
            json={
                "provider": "mpesa",
                "environment": "sandbox",
                "base_url": sim_url,
                "credentials": {
                    "consumer_key": creds["consumer_key"],
                    "consumer_secret": creds["consumer_secret"],
                    "shortcode": creds["till"]["store_number"],
                    "kind": "till",
                    "till_number": creds["till"]["till_number"],
                    "passkey": creds["till"]["passkey"],
                },
            },
        )
    assert response.status_code == 201, response.text
    account: dict[str, Any] = response.json()
    return account


@pytest.fixture
def merchant(gateway: Gateway, sim_url: str, sim: Simulator) -> Merchant:
    return create_merchant(gateway, sim_url)


@pytest.fixture
def merchant_factory(gateway: Gateway, sim_url: str, sim: Simulator) -> Callable[..., Merchant]:
    def make(**kwargs: Any) -> Merchant:
        return create_merchant(gateway, sim_url, **kwargs)

    return make


def db_rows(database_url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Run one read query against the test database (from a test's own event loop)."""
    import asyncio

    from sqlalchemy import text

    from lipwa.store.db import make_engine

    async def run() -> list[dict[str, Any]]:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                result = await conn.execute(text(sql), params)
                return [dict(row._mapping) for row in result]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def db_execute(database_url: str, sql: str, **params: Any) -> None:
    """Run one write against the test database (to stage states a crash would leave)."""
    import asyncio

    from sqlalchemy import text

    from lipwa.store.db import make_engine

    async def run() -> None:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(sql), params)
        finally:
            await engine.dispose()

    asyncio.run(run())


def events_for(merchant: Merchant, payment_id: str) -> list[str]:
    with merchant.client() as c:
        data = c.get("/v1/events", params={"resource_id": payment_id, "limit": 100}).json()
    return [e["type"] for e in data["data"]]
