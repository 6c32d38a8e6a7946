"""GET /metrics, the provider call timing, readiness, and the Prometheus alert rules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa import metrics
from lipwa.api.app import create_app
from lipwa.clock import utcnow
from lipwa.config import Settings
from lipwa.providers.base import QueryFailure, SendOutcome, SendResult
from lipwa.simulator.testing import free_port, serve_in_thread
from lipwa.store.migrate import head_revision
from lipwa.store.tables import Payment
from lipwa.vault import generate_key_text
from tests.ops_support import (
    ROOT,
    add_account,
    add_heartbeat,
    add_merchant,
    fresh_database,
    run_db,
    vault_of,
)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ----- provider call timing ----------------------------------------------------------------------
class _TokenError(Exception):
    def __init__(self, transient: bool) -> None:
        self.transient = transient


class FakeClient:
    def __init__(self) -> None:
        self.refuse = False

    async def stk_push(self) -> SendResult:
        return SendResult(SendOutcome.AMBIGUOUS)

    async def stk_query(self) -> QueryFailure:
        return QueryFailure("timeout", "no answer")

    async def check_credentials(self) -> QueryFailure | None:
        try:
            await self._fetch_token()
        except _TokenError:
            return QueryFailure("401", "refused", 401)
        return None

    async def _fetch_token(self) -> tuple[str, float]:
        if self.refuse:
            raise _TokenError(transient=False)
        return "token", 3600.0

    def sync_helper(self) -> str:
        return "untouched"


async def test_provider_calls_are_timed_by_operation_and_outcome() -> None:
    client = metrics.instrument_client(FakeClient(), "mpesa")
    name = "lipwa_provider_request_seconds_count"
    before = {
        "push": sample(name, provider="mpesa", operation="stk_push", outcome="ambiguous"),
        "query": sample(name, provider="mpesa", operation="stk_query", outcome="failure"),
        "token": sample(name, provider="mpesa", operation="token", outcome="ok"),
        "refused": sample(name, provider="mpesa", operation="token", outcome="refused"),
        "creds": sample("lipwa_provider_credential_failures_total", provider="mpesa"),
    }
    await client.stk_push()
    await client.stk_query()
    assert await client.check_credentials() is None
    client.refuse = True
    assert isinstance(await client.check_credentials(), QueryFailure)
    assert client.sync_helper() == "untouched"
    after = {
        "push": sample(name, provider="mpesa", operation="stk_push", outcome="ambiguous"),
        "query": sample(name, provider="mpesa", operation="stk_query", outcome="failure"),
        "token": sample(name, provider="mpesa", operation="token", outcome="ok"),
        "refused": sample(name, provider="mpesa", operation="token", outcome="refused"),
        "creds": sample("lipwa_provider_credential_failures_total", provider="mpesa"),
    }
    assert {k: after[k] - before[k] for k in before} == {
        "push": 1,
        "query": 1,
        "token": 1,
        "refused": 1,
        "creds": 1,
    }
    assert isinstance(client, FakeClient)


def test_helpers_count() -> None:
    before = sample("lipwa_payments_total", provider="momo", status="succeeded")
    metrics.payment_transition("momo", "succeeded")
    assert sample("lipwa_payments_total", provider="momo", status="succeeded") == before + 1
    before = sample("lipwa_webhook_deliveries_total", outcome="gave_up")
    metrics.webhook_delivery("gave_up")
    assert sample("lipwa_webhook_deliveries_total", outcome="gave_up") == before + 1
    with metrics.callback_timer("stk"):
        pass
    assert sample("lipwa_callback_processing_seconds_count", kind="stk") >= 1


# ----- the endpoint ------------------------------------------------------------------------------
@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    with fresh_database(tmp_path) as url:
        yield url


@contextmanager
def gateway(db: str, **values: Any) -> Iterator[httpx.Client]:
    """The real app on a loopback port (its lifespan runs), without the embedded worker."""
    settings = Settings(
        database_url=db,
        encryption_keys=SecretStr(generate_key_text("v1")),
        run_worker=False,
        **values,
    )
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        yield client


def test_metrics_are_open_without_a_token_and_hold_no_ids(db: str) -> None:
    run_db(db, lambda session: add_heartbeat(session, age_s=30))
    with gateway(db) as client:
        client.get("/v1/payments/pay_secretish123", headers={"Authorization": "Bearer nope"})
        client.post("/callbacks/tok_abcdefghijklmnop/stk/pay_1", content=b"{}")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    assert (
        'lipwa_http_requests_total{method="GET",route="/v1/payments/{payment_id}",status="4xx"}'
        in body
    )
    assert 'route="/callbacks/{token}/stk/{payment_id}"' in body
    assert "pay_secretish123" not in body and "tok_abcdefghijklmnop" not in body
    assert 'lipwa_open_payments{status="pending"} 0.0' in body
    assert "lipwa_payments_total" in body and "lipwa_webhook_deliveries_total" in body
    age = sample("lipwa_worker_heartbeat_age_seconds")
    assert 29 <= age < 120


def _open_payment(merchant_id: str, account_id: str, *, age_s: float, parked: bool) -> Payment:
    created = utcnow() - timedelta(seconds=age_s)
    return Payment(
        id=f"pay_m{uuid.uuid4().hex[:16]}", merchant_id=merchant_id, account_id=account_id,
        mode="test", provider="mpesa", channel="prompt",
        status="unknown" if parked else "pending", amount=Decimal("10"), currency="KES",
        phone="254708374149", network="safaricom", reference="r", description="",
        provider_reference="r", provider_description="r", meta={},
        provider_request_id=str(uuid.uuid4()), send_state="ambiguous" if parked else "sent",
        check_attempts=0, next_check_at=None if parked else utcnow() + timedelta(seconds=30),
        created_at=created, updated_at=created,
    )  # fmt: skip


def test_a_parked_payment_is_counted_apart_and_does_not_pin_the_age(db: str) -> None:
    """A payment parked for good must not keep the "unresolved too long" alert firing and
    hide the next stuck one; it has its own gauge (and alert on new ones)."""
    vault = vault_of(generate_key_text("v1"))

    async def seed(session: AsyncSession) -> None:
        merchant = await add_merchant(session)
        account = await add_account(session, vault, merchant)
        session.add(_open_payment(merchant, account, age_s=7200, parked=True))
        session.add(_open_payment(merchant, account, age_s=300, parked=False))

    run_db(db, seed)
    with gateway(db) as client:
        assert client.get("/metrics").status_code == 200
    assert sample("lipwa_parked_payments") == 1
    assert sample("lipwa_open_payments", status="unknown") == 1
    assert sample("lipwa_open_payments", status="pending") == 1
    assert 290 <= sample("lipwa_oldest_open_payment_age_seconds") < 400


def test_metrics_are_served_while_the_database_cannot_be_read(db: str) -> None:
    """The outage is when the error and latency series matter most: never a 500 scrape."""

    async def break_backlog(session: AsyncSession) -> None:
        # Renamed, not dropped: other tables refer to it (PostgreSQL refuses the drop).
        await session.execute(text("ALTER TABLE payments RENAME TO payments_gone"))

    run_db(db, break_backlog)
    before = sample("lipwa_metrics_db_read_errors_total")
    with gateway(db) as client:
        response = client.get("/metrics")
    assert response.status_code == 200 and "lipwa_http_requests_total" in response.text
    assert sample("lipwa_metrics_db_read_errors_total") == before + 1


def test_metrics_token_is_required_when_set(db: str) -> None:
    with gateway(db, metrics_token=SecretStr("scrape-me")) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert ok.status_code == 200 and "lipwa_http_requests_total" in ok.text


def test_a_worker_process_serves_its_own_metrics(db: str) -> None:
    """Deliveries, status checks and recovery's provider calls happen in `lipwa worker`
    processes: with the API apart, only the worker can export them."""
    port = free_port()
    env = {
        **os.environ,
        "LIPWA_DATABASE_URL": db,
        "LIPWA_ENCRYPTION_KEYS": generate_key_text("v1"),
        "LIPWA_WORKER_METRICS_PORT": str(port),
        "LIPWA_LOG_LEVEL": "WARNING",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "lipwa.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                break
            except httpx.TransportError:
                assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
                assert time.monotonic() < deadline, "the worker never served its metrics"
                time.sleep(0.2)
        assert scraped.status_code == 200
        assert "lipwa_webhook_deliveries_total" in scraped.text
    finally:
        worker.terminate()
        worker.wait(timeout=20)


# ----- readiness ---------------------------------------------------------------------------------
def test_ready_follows_the_schema_behind_never_ahead(db: str) -> None:
    """Behind the code: not ready (run lipwa migrate). Ahead of it, as in a rolling deploy
    once the first new process migrated: still ready, said in the information."""

    def at(revision: str) -> None:
        async def stamp(session: AsyncSession) -> None:
            await session.execute(
                text("UPDATE alembic_version SET version_num = :v"), {"v": revision}
            )

        run_db(db, stamp)

    with gateway(db) as client:
        assert client.get("/health/ready").status_code == 200
        at("0099_from_a_newer_version")
        ahead = client.get("/health/ready")
        assert ahead.status_code == 200, ahead.text
        assert "newer than this code" in ahead.json()["info"]["migrations"]
        at("0001")
        behind = client.get("/health/ready")
        assert behind.status_code == 503
        assert "run lipwa migrate" in behind.json()["checks"]["migrations"]
        at(head_revision() or "")


def test_ready_reports_redis_and_the_worker(db: str) -> None:
    # Redis down: information, never a 503 (rate limits fail open; callbacks must get in).
    with gateway(db, redis_url="redis://127.0.0.1:1/0") as client:
        down = client.get("/health/ready")
    assert down.status_code == 200
    assert down.json()["info"]["redis"].startswith("error")
    assert "redis" not in down.json()["checks"]
    assert down.json()["info"]["worker"] == {"status": "never_seen"}

    run_db(db, lambda session: add_heartbeat(session, age_s=3))
    with gateway(db) as client:
        ready = client.get("/health/ready").json()
    assert ready["status"] == "ok" and "redis" not in ready["info"]
    assert ready["checks"]["migrations"] == "ok"
    assert ready["info"]["worker"]["status"] == "ok"


def test_ready_with_a_live_redis(db: str) -> None:
    import asyncio

    from lipwa.services.readiness import ping_redis

    try:
        asyncio.run(ping_redis("redis://127.0.0.1:6379/0", timeout_s=1))
    except Exception:
        pytest.skip("no Redis on 127.0.0.1:6379")
    with gateway(db, redis_url="redis://127.0.0.1:6379/0") as client:
        ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["info"]["redis"] == "ok"


# ----- alert rules -------------------------------------------------------------------------------
def test_alert_rules_pass_their_promtool_tests() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is required in CI (apt-get install prometheus)")
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    folder = ROOT / "deploy" / "prometheus"
    checked = subprocess.run(
        [promtool, "check", "rules", "lipwa-alerts.yml"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "lipwa-alerts.test.yml"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr
