"""``lipwa doctor``: a good configuration passes; a broken live one fails with one clear line
per problem and exit code 1; ``--online`` fetches tokens from the simulator."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from lipwa.cli import app
from lipwa.config import Settings
from lipwa.doctor import account_checks, config_checks, key_checks, service_checks
from lipwa.doctor.facts import Facts
from lipwa.doctor.result import Status
from lipwa.keys import KNOWN_EXAMPLE_KEYS, dated_version
from lipwa.services.accounts import create_api_key
from lipwa.store.tables import ProviderAccount, WorkerHeartbeat
from lipwa.vault import generate_key_text
from tests.ops_support import (
    ALERT_RULES,
    add_account,
    add_endpoint,
    add_heartbeat,
    add_merchant,
    fresh_database,
    postgres_base_url,
    run_db,
    vault_of,
)

runner = CliRunner()
GOOD_KEY = generate_key_text(dated_version())
EXAMPLE_KEY = "v20250101:" + sorted(KNOWN_EXAMPLE_KEYS)[0]
SHORT_KEY = "vshort:" + base64.b64encode(b"sixteen byte key").decode()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    with fresh_database(tmp_path) as url:
        yield url


def doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    """Run the doctor twice: JSON (parsed) and human (the table)."""
    base = {"COLUMNS": "250", "LIPWA_LOG_JSON": "true"}
    machine = runner.invoke(app, ["doctor", "--json", *args], env={**base, **env})
    if machine.exception and not isinstance(machine.exception, SystemExit):
        raise machine.exception
    human = runner.invoke(app, ["doctor", *args], env={**base, **env})
    assert machine.exit_code == human.exit_code, (machine.output, human.output)
    return machine.exit_code, json.loads(machine.output), human.output


def wait_for_first_heartbeat(url: str, timeout_s: float = 10.0) -> None:
    async def beats(session: AsyncSession) -> int:
        return len((await session.execute(select(WorkerHeartbeat))).all())

    deadline = time.monotonic() + timeout_s
    while run_db(url, beats) == 0:
        assert time.monotonic() < deadline, "the embedded worker never beat"
        time.sleep(0.05)


def by_status(report: dict[str, Any], status: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"] if c["status"] == status}


# ----- whole configurations -----------------------------------------------------------------------
def test_a_good_sandbox_configuration_passes(db: str) -> None:
    vault = vault_of(GOOD_KEY)

    async def seed(session: AsyncSession) -> None:
        merchant = await add_merchant(session)
        await add_account(session, vault, merchant, base_url="http://127.0.0.1:8700")
        await create_api_key(session, merchant, "test")
        await add_heartbeat(session, age_s=2)

    run_db(db, seed)
    env = {
        "LIPWA_DATABASE_URL": db,
        "LIPWA_ENCRYPTION_KEYS": GOOD_KEY,
        "LIPWA_MODE": "sandbox",
        "LIPWA_PUBLIC_URL": "http://localhost:8000",
    }
    code, report, human = doctor(env, "--alert-rules", str(ALERT_RULES))
    assert code == 0, human
    assert report["ok"] is True and report["summary"]["fail"] == 0
    assert by_status(report, "warn") == {}, human
    assert "0 failed, 0 warning(s)" in human
    decrypt = next(c for c in report["checks"] if c["name"] == "secrets.decrypt")
    assert GOOD_KEY.split(":")[0] in decrypt["detail"]  # which key version the account uses


@pytest.mark.skipif(
    postgres_base_url() is None, reason="a live configuration needs PostgreSQL (CI's second run)"
)
def test_a_good_live_configuration_passes(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as url:
        vault = vault_of(GOOD_KEY)

        async def seed(session: AsyncSession) -> None:
            merchant = await add_merchant(session)
            await add_account(session, vault, merchant, environment="production")
            await create_api_key(session, merchant, "live")
            await add_endpoint(session, vault, merchant, "live")
            await add_heartbeat(session, age_s=5)

        run_db(url, seed)
        env = {
            "LIPWA_DATABASE_URL": url,
            "LIPWA_ENCRYPTION_KEYS": GOOD_KEY,
            "LIPWA_MODE": "production",
            "LIPWA_PUBLIC_URL": "https://pay.example.co.ke",
            "LIPWA_METRICS_TOKEN": "scrape-token",
            "LIPWA_CALLBACK_SOURCES": "196.201.214.0/24,196.201.212.127",
        }
        code, report, human = doctor(env, "--alert-rules", str(ALERT_RULES))
        assert code == 0, human
        assert by_status(report, "warn") == {}, human
        assert by_status(report, "pass")["database.engine"]["detail"] == "PostgreSQL"
        assert "database clock within" in by_status(report, "pass")["database.clock"]["detail"]


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[str]:
    with fresh_database(tmp_path, sqlite=True) as url:
        yield url


def test_a_broken_live_configuration_fails_once_per_problem(sqlite_db: str) -> None:
    db = sqlite_db
    ring = f"{EXAMPLE_KEY},{SHORT_KEY}"
    vault = vault_of(EXAMPLE_KEY)
    lost = vault_of(generate_key_text("vlost"))
    ids: dict[str, str] = {}

    async def seed(session: AsyncSession) -> None:
        merchant = await add_merchant(session)
        # A production account left on Safaricom's sandbox host (stored before that was
        # refused when an account is made).
        ids["sandbox_host"] = await add_account(session, vault, merchant, environment="production")
        await session.execute(
            update(ProviderAccount)
            .where(ProviderAccount.id == ids["sandbox_host"])
            .values(base_url="https://sandbox.safaricom.co.ke")
        )
        # Sealed with a key that is not in the ring any more.
        ids["lost"] = await add_account(session, lost, merchant, environment="production")
        await create_api_key(session, merchant, "live")
        await add_heartbeat(session, age_s=600)

    run_db(db, seed)
    env = {
        "LIPWA_DATABASE_URL": db,
        "LIPWA_ENCRYPTION_KEYS": ring,
        "LIPWA_PUBLIC_URL": "http://localhost:8000",
        "LIPWA_VERIFY_TLS": "false",
    }
    code, report, human = doctor(env, "--alert-rules", str(ALERT_RULES))
    assert code == 1
    failures = by_status(report, "fail")
    assert set(failures) == {
        "config.public_url",
        "config.public_url.host",
        "config.verify_tls",
        "keys.v20250101",
        "keys.vshort",
        "database.engine",
        f"account.{ids['sandbox_host']}.host",
        f"secrets.{ids['lost']}",
        "worker.heartbeat",
    }, human
    assert "https" in failures["config.public_url"]["detail"]
    assert "published example key" in failures["keys.v20250101"]["detail"]
    assert "16 bytes, not 32" in failures["keys.vshort"]["detail"]
    assert "SQLite holds production data" in failures["database.engine"]["detail"]
    assert "not a production host" in failures[f"account.{ids['sandbox_host']}.host"]["detail"]
    assert "'vlost' not in ring" in failures[f"secrets.{ids['lost']}"]["detail"]
    assert "600 s old" in failures["worker.heartbeat"]["detail"]
    assert all(c["fix"] for c in failures.values())
    # The table: one row per problem, its name once, and its fix beside it.
    for name in failures:
        assert human.count(f" {name} ") == 1, name
    assert "9 failed" in human
    assert "lipwa keys generate" in human
    warnings = by_status(report, "warn")
    assert "keys.age" in warnings and "config.mode" in warnings


def test_an_unmigrated_database_is_one_failure(tmp_path: Path) -> None:
    env = {
        "LIPWA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}",
        "LIPWA_ENCRYPTION_KEYS": GOOD_KEY,
    }
    code, report, _ = doctor(env, "--alert-rules", str(ALERT_RULES))
    assert code == 1
    assert set(by_status(report, "fail")) == {"database.migrations"}
    assert "lipwa migrate" in by_status(report, "fail")["database.migrations"]["fix"]


def test_an_unreachable_database_is_reported_not_raised() -> None:
    env = {
        "LIPWA_DATABASE_URL": "postgresql+asyncpg://nobody:pw@127.0.0.1:1/none",
        "LIPWA_ENCRYPTION_KEYS": GOOD_KEY,
    }
    code, report, human = doctor(env, "--alert-rules", str(ALERT_RULES))
    assert code == 1
    assert "database.reachable" in by_status(report, "fail")
    assert "pw@" not in human


def test_a_bad_setting_exits_2() -> None:
    result = runner.invoke(app, ["doctor"], env={"LIPWA_PUBLIC_URL": "ftp://x"})
    assert result.exit_code == 2 and "Configuration error" in result.output


# ----- online -------------------------------------------------------------------------------------
@pytest.fixture
def simulator_url() -> Iterator[str]:
    from lipwa.simulator.app import build_app
    from lipwa.simulator.core import SimSettings, Simulator
    from lipwa.simulator.testing import serve_in_thread

    sim = Simulator(seed=3, settings=SimSettings(prompt_seconds=0.2))
    with serve_in_thread(build_app(sim)) as url:
        yield url


def test_online_gets_tokens_from_the_simulator(db: str, simulator_url: str) -> None:
    from lipwa.api.app import create_app
    from lipwa.simulator.testing import free_port, serve_in_thread

    creds = httpx.get(f"{simulator_url}/_sim/credentials").json()
    mpesa, momo = creds["mpesa"], creds["momo"]
    vault = vault_of(GOOD_KEY)
    ids: dict[str, str] = {}
    good_mpesa = {
        "consumer_key": mpesa["consumer_key"],
        "consumer_secret": mpesa["consumer_secret"],
        "shortcode": mpesa["paybill"]["shortcode"],
        "kind": "paybill",
        "passkey": mpesa["paybill"]["passkey"],
    }

    async def seed(session: AsyncSession) -> None:
        merchant = await add_merchant(session)
        ids["mpesa"] = await add_account(
            session, vault, merchant, base_url=simulator_url, credentials=good_mpesa
        )
        ids["momo"] = await add_account(
            session,
            vault,
            merchant,
            provider="momo",
            base_url=simulator_url,
            credentials={
                "api_user": momo["api_user"],
                "api_key": momo["api_key"],
                "subscription_keys": momo["subscription_keys"],
                "target_environment": "sandbox",
                "currency": "EUR",
            },
        )
        ids["wrong"] = await add_account(
            session,
            vault,
            merchant,
            base_url=simulator_url,
            credentials={**good_mpesa, "consumer_secret": "not-the-secret"},
        )
        ids["endpoint"] = await add_endpoint(session, vault, merchant, "test")  # port 9: closed

    run_db(db, seed)
    port = free_port()
    settings = Settings(
        database_url=db,
        encryption_keys=SecretStr(GOOD_KEY),
        public_url=f"http://127.0.0.1:{port}",
        worker_jobs="callback_sweep",
    )
    env = {
        "LIPWA_DATABASE_URL": db,
        "LIPWA_ENCRYPTION_KEYS": GOOD_KEY,
        "LIPWA_PUBLIC_URL": settings.public_url,
    }
    with serve_in_thread(create_app(settings), port=port):
        wait_for_first_heartbeat(db)  # the embedded worker starts beside the API, not before it
        code, report, human = doctor(env, "--online", "--alert-rules", str(ALERT_RULES))
    assert code == 1, human
    passes, fails = by_status(report, "pass"), by_status(report, "fail")
    assert f"online.{ids['mpesa']}.token" in passes
    assert f"online.{ids['momo']}.token" in passes
    assert "online.public_url" in passes
    assert "worker.heartbeat" in passes  # the gateway's embedded worker beats
    assert set(fails) == {f"online.{ids['wrong']}.token"}, human
    assert "no token" in fails[f"online.{ids['wrong']}.token"]["detail"]
    assert "not-the-secret" not in human and mpesa["consumer_secret"] not in human
    warn = by_status(report, "warn")[f"online.webhook.{ids['endpoint']}"]
    assert "does not answer" in warn["detail"] and "/hook" not in warn["detail"]


def test_online_reports_an_unreachable_public_url(db: str) -> None:
    from lipwa.simulator.testing import free_port

    env = {
        "LIPWA_DATABASE_URL": db,
        "LIPWA_ENCRYPTION_KEYS": GOOD_KEY,
        "LIPWA_PUBLIC_URL": f"http://127.0.0.1:{free_port()}",
    }
    code, report, _ = doctor(env, "--online", "--alert-rules", str(ALERT_RULES))
    assert code == 1
    assert "providers cannot call back" in by_status(report, "fail")["online.public_url"]["detail"]


# ----- single checks ------------------------------------------------------------------------------
def settings(**values: Any) -> Settings:
    return Settings(**values)


def test_key_checks() -> None:
    ok, keys = key_checks.ring(settings(encryption_keys=GOOD_KEY), live=True)
    assert [c.status for c in ok] == [Status.PASS] and keys[0].fingerprint in ok[0].detail
    weak = "v20260101:" + base64.b64encode(b"ab" * 16).decode()
    found, _ = key_checks.ring(settings(encryption_keys=weak), live=True)
    assert found[0].status is Status.FAIL and "not random" in found[0].detail
    found, _ = key_checks.ring(settings(encryption_keys=weak), live=False)
    assert found[0].status is Status.WARN
    twice = f"{GOOD_KEY},v2:{GOOD_KEY.split(':', 1)[1]}"
    found, _ = key_checks.ring(settings(encryption_keys=twice), live=True)
    assert "two versions" in found[0].detail
    found, _ = key_checks.ring(settings(encryption_keys=None), live=True)
    assert found[0].status is Status.FAIL and "not set" in found[0].detail
    garbage, _ = key_checks.ring(settings(encryption_keys="v1:%%%"), live=True)
    assert "not valid base64" in garbage[0].detail
    # A key pasted without its "version:" is named by its place, never printed.
    bare = GOOD_KEY.split(":", 1)[1]
    unnamed, _ = key_checks.ring(settings(encryption_keys=f"{GOOD_KEY},{bare}"), live=True)
    assert any("entry2" in c.name and c.status is Status.FAIL for c in unnamed)
    assert all(bare not in c.name and bare not in c.detail for c in unnamed)


def test_key_age() -> None:
    _, keys = key_checks.ring(settings(encryption_keys=generate_key_text("v20260101")), True)
    assert key_checks.age(keys, date(2026, 3, 1))[0].status is Status.PASS
    old = key_checks.age(keys, date(2026, 1, 1) + timedelta(days=91))[0]
    assert old.status is Status.WARN and "91 days old" in old.detail
    _, undated = key_checks.ring(settings(encryption_keys=generate_key_text("v1")), True)
    assert "unknown" in key_checks.age(undated, date(2026, 1, 1))[0].detail


def test_public_url_checks() -> None:
    good = config_checks.public_url(settings(public_url="https://pay.example.com"), live=True)
    assert [c.status for c in good] == [Status.PASS]
    private = config_checks.public_url(settings(public_url="https://10.0.0.5"), live=True)
    assert [c.name for c in private] == ["config.public_url.host"]
    sandbox = config_checks.public_url(settings(public_url="http://localhost:8000"), live=False)
    assert sandbox[0].status is Status.PASS


def test_callback_sources_check() -> None:
    listed = config_checks.callback_sources(settings(callback_sources="196.201.214.0/24"), True)
    assert (listed.status, listed.detail) == (
        Status.PASS, "provider callbacks are taken from 1 listed source(s) only",
    )  # fmt: skip
    open_live = config_checks.callback_sources(settings(), live=True)
    assert open_live.status is Status.WARN and "LIPWA_CALLBACK_SOURCES" in (open_live.fix or "")
    assert config_checks.callback_sources(settings(), live=False).status is Status.PASS


def test_mode_checks() -> None:
    live = Facts(dialect="sqlite", revision="x", head="x", live_keys=1)
    found = config_checks.mode(settings(mode="sandbox"), live)
    assert found[0].status is Status.FAIL
    both = Facts(dialect="sqlite", revision="x", head="x", live_keys=1, test_keys=1)
    assert "both sandbox and production" in config_checks.mode(settings(), both)[0].detail
    test_only = Facts(dialect="sqlite", revision="x", head="x", test_keys=1)
    assert config_checks.mode(settings(mode="production"), test_only)[0].status is Status.FAIL


def test_redis_checks() -> None:
    facts = Facts(dialect="postgresql")
    alone = asyncio.run(service_checks.redis(settings(), facts, processes=1))
    assert alone.status is Status.PASS
    many = asyncio.run(service_checks.redis(settings(), facts, processes=4))
    assert many.status is Status.FAIL and "limits multiply" in many.detail
    split = asyncio.run(service_checks.redis(settings(role="api"), facts, processes=1))
    assert split.status is Status.FAIL
    down = asyncio.run(
        service_checks.redis(settings(redis_url="redis://127.0.0.1:1/0"), facts, processes=1)
    )
    assert down.status is Status.FAIL and "does not answer" in down.detail


def test_alert_rules_checks(tmp_path: Path) -> None:
    assert service_checks.alert_rules(ALERT_RULES).status is Status.PASS
    assert service_checks.alert_rules(tmp_path / "none.yml").status is Status.WARN
    partial = tmp_path / "partial.yml"
    partial.write_text("groups: [{name: x, rules: [{alert: LipwaWorkerDown, expr: up}]}]\n")
    found = service_checks.alert_rules(partial)
    assert found.status is Status.WARN and "LipwaPaymentSuccessRateLow" in found.detail
    broken = tmp_path / "broken.yml"
    broken.write_text("groups: [\n")
    assert service_checks.alert_rules(broken).status is Status.FAIL


def test_momo_production_account_on_the_sandbox_target_fails() -> None:
    from lipwa.store.tables import ProviderAccount

    account = ProviderAccount(
        id="acct_1",
        merchant_id="mer_1",
        provider="momo",
        environment="production",
        base_url="https://proxy.momoapi.mtn.com",
        status="active",
        config={"target_environment": "sandbox"},
    )
    facts = Facts(dialect="postgresql", revision="x", head="x", accounts=[account])
    found = account_checks.hosts(facts)
    assert [c.status for c in found] == [Status.FAIL]
    assert "X-Target-Environment 'sandbox'" in found[0].detail
