"""Guards and switches end to end: every refusal is a clear error object, comes before any
write or provider call, and holds across processes.

The session gateway runs with loosened guards (conftest); these tests tighten them per
merchant (merchant settings) or start gateways of their own: other processes in all but name
(own thread, event loop, Container and connection pools) against the same database.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from lipwa.api.app import create_app
from lipwa.cli import app as cli_app
from lipwa.config import Settings
from lipwa.container import ConfigurationError, Container
from lipwa.domain.flags import rollout_bucket
from lipwa.simulator.core import Simulator
from lipwa.simulator.testing import free_port, serve_in_thread
from lipwa.store.migrate import upgrade
from tests.gateway.conftest import Gateway, Merchant, create_merchant, db_execute, db_rows

STK = "/mpesa/stkpush/v1/processrequest"
RTP = "/collection/v1_0/requesttopay"
MOMO_PHONE = "+256772123456"  # MTN Uganda number, settled by the MoMo sandbox account (EUR)
REDIS_URL = os.environ.get("LIPWA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


# ----- helpers ----------------------------------------------------------------------------------
def sim_calls(sim_url: str, path: str) -> int:
    return int(httpx.get(f"{sim_url}/_sim/requests", params={"path": path}).json()["count"])


def payment_count(database_url: str, merchant_id: str) -> int:
    rows = db_rows(
        database_url, "SELECT count(*) AS n FROM payments WHERE merchant_id = :m", m=merchant_id
    )
    return int(rows[0]["n"])


def hits(limit: str) -> float:
    return REGISTRY.get_sample_value("lipwa_rate_limit_hits_total", {"limit": limit}) or 0.0


def error_of(response: httpx.Response, status: int, type_: str, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) >= {"type", "code", "message", "param"}
    assert (error["type"], error["code"]) == (type_, code), error
    assert error["message"]
    return error


def ref() -> str:
    return f"r-{uuid.uuid4().hex[:8]}"


def set_flag(gateway: Gateway, key: str, enabled: bool, **extra: Any) -> dict[str, Any]:
    body = {"enabled": enabled, "reason": extra.pop("reason", "test"), **extra}
    with gateway.admin() as admin:
        response = admin.put(f"/admin/v1/flags/{key}", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@contextmanager
def flag_off(gateway: Gateway, key: str, **extra: Any) -> Iterator[None]:
    """Switch ``key`` off (or set a rollout) for the block; always switch it back on."""
    set_flag(gateway, key, "percentage" in extra, **extra)  # a rollout stays enabled
    try:
        yield
    finally:
        set_flag(gateway, key, True, **({"percentage": 100} if key.startswith("rollout") else {}))


@contextmanager
def another_gateway(base: Settings, tmp: Path, **overrides: Any) -> Iterator[Gateway]:
    """A second gateway process (own Container) on the same database and vault keys."""
    port = free_port()
    values = {**base.model_dump(), "public_url": f"http://127.0.0.1:{port}", "run_worker": False}
    settings = Settings(**{**values, **overrides})
    with serve_in_thread(create_app(settings), port=port) as url:
        yield Gateway(url=url, settings=settings, log_path=tmp / "unused.log")


def fire(url: str, key: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """POST all ``bodies`` to /v1/payments at once (each with its own Idempotency-Key)."""

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/payments", json=b, headers={"Idempotency-Key": str(uuid.uuid4())}
                    )
                    for b in bodies
                )
            )

    return asyncio.run(go())


def fire_through_both(
    one: Gateway, two: Gateway, key: str, bodies: list[dict[str, Any]]
) -> list[httpx.Response]:
    """The first half of ``bodies`` through ``one``, the second through ``two``, all at once."""

    async def both() -> list[httpx.Response]:
        half = len(bodies) // 2
        halves = await asyncio.gather(
            asyncio.to_thread(fire, one.url, key, bodies[:half]),
            asyncio.to_thread(fire, two.url, key, bodies[half:]),
        )
        return halves[0] + halves[1]

    return asyncio.run(both())


# ----- merchant prompt budget ------------------------------------------------------------------
def test_prompt_budget_refuses_over_the_limit_and_refusals_spend_none(
    merchant_factory: Callable[..., Merchant], sim_url: str, database_url: str
) -> None:
    shop = merchant_factory(
        settings={
            "rate_limits": {"prompts": "3/minute"},
            "limits": {"KES": {"daily_per_payer": "100"}},
        }
    )
    pushes, before_hits = sim_calls(sim_url, STK), hits("merchant_prompts")
    for _ in range(4):  # refused by an earlier guard: the budget stays whole
        error = error_of(
            shop.pay(amount="500", currency="KES", phone="0708374149", reference=ref()),
            400,
            "invalid_request_error",
            "daily_limit_exceeded",
        )
        assert error["param"] == "amount"
    for amount in ("10", "11", "12"):
        response = shop.pay(amount=amount, currency="KES", phone="0708374149", reference=ref())
        assert response.status_code == 201, response.text
    refused = shop.pay(amount="13", currency="KES", phone="0708374149", reference=ref())
    error = error_of(refused, 429, "rate_limit_error", "rate_limited")
    assert "3/minute" in error["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert sim_calls(sim_url, STK) - pushes == 3
    assert payment_count(database_url, shop.id) == 3
    assert hits("merchant_prompts") - before_hits == 1


# ----- payer lock and same amount ---------------------------------------------------------------
def test_one_open_prompt_per_payer(
    merchant_factory: Callable[..., Merchant], sim: Simulator, sim_url: str, database_url: str
) -> None:
    shop = merchant_factory(settings={"rate_limits": {"payer_lock_s": 120}})
    sim.settings.prompt_seconds = 1.5  # the first prompt stays open for a while
    first = shop.pay(amount="10", currency="KES", phone="0708374149", reference=ref()).json()
    pushes, before_hits = sim_calls(sim_url, STK), hits("payer_busy")
    busy = shop.pay(amount="20", currency="KES", phone="+254 708 374 149", reference=ref())
    error = error_of(busy, 429, "rate_limit_error", "payer_busy")
    assert error["param"] == "phone"
    assert error["payment_id"] == first["id"]
    assert 1 <= int(busy.headers["Retry-After"]) <= 120
    assert sim_calls(sim_url, STK) == pushes  # refused before any provider call
    assert payment_count(database_url, shop.id) == 1
    assert hits("payer_busy") - before_hits == 1
    other = shop.pay(amount="20", currency="KES", phone="0708374150", reference=ref())
    assert other.status_code == 201, other.text
    assert shop.wait_final(first["id"])["status"] == "succeeded"
    again = shop.pay(amount="20", currency="KES", phone="0708374149", reference=ref())
    assert again.status_code == 201, again.text  # the prompt was answered: the lock is gone


def test_mpesa_same_amount_within_two_minutes(
    merchant_factory: Callable[..., Merchant], sim_url: str, database_url: str
) -> None:
    shop = merchant_factory(settings={"rate_limits": {"same_amount_s": 120, "payer_lock_s": 0}})
    first = shop.pay(amount="10", currency="KES", phone="0708374149", reference=ref()).json()
    assert shop.wait_final(first["id"])["status"] == "succeeded"
    pushes = sim_calls(sim_url, STK)
    same = shop.pay(amount="10", currency="KES", phone="0708374149", reference=ref())
    error = error_of(same, 429, "rate_limit_error", "same_amount_too_soon")
    assert (error["param"], error["payment_id"]) == ("amount", first["id"])
    assert sim_calls(sim_url, STK) == pushes
    assert (
        shop.pay(amount="11", currency="KES", phone="0708374149", reference=ref()).status_code
        == 201
    )
    # MoMo has no such rule.
    for _ in range(2):
        momo = shop.pay(amount="3", currency="EUR", phone=MOMO_PHONE, reference=ref())
        assert momo.status_code == 201, momo.text
    assert payment_count(database_url, shop.id) == 4


# ----- duplicates and idempotency ---------------------------------------------------------------
def test_racing_requests_for_one_payer_take_turns(
    merchant_factory: Callable[..., Merchant], sim_url: str, database_url: str
) -> None:
    """A client retrying with a new Idempotency-Key each time, all at once: the payer checks
    see one another's payments (PostgreSQL: an advisory lock per payer; SQLite: one writer)."""
    shop = merchant_factory(settings={"duplicate_window_s": 600})
    pushes = sim_calls(sim_url, STK)
    charge = {"amount": "10", "currency": "KES", "phone": "0708374149", "reference": ref()}
    answers = fire(shop.gateway.url, shop.api_key, [charge] * 8)
    assert sorted(a.status_code for a in answers) == [201] + [409] * 7
    [paid] = [a.json()["id"] for a in answers if a.status_code == 201]
    assert {a.json()["error"]["payment_id"] for a in answers if a.status_code == 409} == {paid}
    assert payment_count(database_url, shop.id) == 1
    assert sim_calls(sim_url, STK) == pushes + 1
    # Eight different charges at once against a daily limit of 10: exactly three of 3 fit.
    # (MoMo: the simulated M-Pesa would fail all prompts but one with its subscriber lock.)
    capped = merchant_factory(settings={"limits": {"EUR": {"daily_per_payer": "10"}}})
    bodies = [
        {"amount": "3", "currency": "EUR", "phone": MOMO_PHONE, "reference": ref()}
        for _ in range(8)
    ]
    answers = fire(capped.gateway.url, capped.api_key, bodies)
    assert sorted(a.status_code for a in answers) == [201] * 3 + [400] * 5
    # None refused by the provider; a prompt's callback may already have settled its payment
    # by the time the answer is written (SQLite takes the racing writers one at a time).
    assert {a.json()["status"] for a in answers if a.status_code == 201} <= {"pending", "succeeded"}
    assert payment_count(database_url, capped.id) == 3


def test_duplicate_guard_names_the_original_and_replays_pass(
    merchant_factory: Callable[..., Merchant], sim_url: str, database_url: str
) -> None:
    shop = merchant_factory(settings={"duplicate_window_s": 600})
    key = str(uuid.uuid4())
    first = shop.pay(
        amount="10", currency="KES", phone="0708374149", reference="inv-9", idempotency_key=key
    )
    assert first.status_code == 201
    assert shop.wait_final(first.json()["id"])["status"] == "succeeded"
    pushes = sim_calls(sim_url, STK)
    # The same Idempotency-Key replays the answer: it never reaches the guards.
    replay = shop.pay(
        amount="10", currency="KES", phone="0708374149", reference="inv-9", idempotency_key=key
    )
    assert replay.status_code == 201
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json()["id"] == first.json()["id"]
    # A new key for the same charge is a duplicate.
    dup = shop.pay(amount="10", currency="KES", phone="254708374149", reference="inv-9")
    error = error_of(dup, 409, "invalid_request_error", "duplicate_payment")
    assert (error["param"], error["payment_id"]) == ("reference", first.json()["id"])
    assert sim_calls(sim_url, STK) == pushes
    assert payment_count(database_url, shop.id) == 1
    # Another reference is another charge; a failed payment blocks nothing.
    assert (
        shop.pay(amount="10", currency="KES", phone="0708374149", reference="inv-10").status_code
        == 201
    )
    failed = shop.pay(amount="10", currency="KES", phone="0712341032", reference="inv-11").json()
    assert shop.wait_final(failed["id"])["status"] == "failed"
    retry = shop.pay(amount="10", currency="KES", phone="0712341032", reference="inv-11")
    assert retry.status_code == 201, retry.text


# ----- daily total per payer --------------------------------------------------------------------
def test_daily_limit_per_payer(
    merchant_factory: Callable[..., Merchant], sim_url: str, database_url: str
) -> None:
    shop = merchant_factory(settings={"limits": {"KES": {"daily_per_payer": "100"}}})
    assert (
        shop.pay(amount="60", currency="KES", phone="0708374149", reference=ref()).status_code
        == 201
    )
    pushes = sim_calls(sim_url, STK)
    over = shop.pay(amount="50", currency="KES", phone="0708374149", reference=ref())
    error = error_of(over, 400, "invalid_request_error", "daily_limit_exceeded")
    assert error["param"] == "amount"
    assert "100.00 KES" in error["message"] and "40.00 KES is left" in error["message"]
    assert sim_calls(sim_url, STK) == pushes
    assert (
        shop.pay(amount="40", currency="KES", phone="0708374149", reference=ref()).status_code
        == 201
    )
    assert (
        shop.pay(amount="100", currency="KES", phone="0708374150", reference=ref()).status_code
        == 201
    )
    failed = shop.pay(amount="100", currency="KES", phone="0712341032", reference=ref()).json()
    assert shop.wait_final(failed["id"])["status"] == "failed"
    assert (
        shop.pay(amount="100", currency="KES", phone="0712341032", reference=ref()).status_code
        == 201
    )
    assert payment_count(database_url, shop.id) == 5


def test_mpesa_cents_cannot_be_switched_on(
    merchant: Merchant, gateway: Gateway, sim_url: str, database_url: str
) -> None:
    """Daraja takes whole shillings: with cents allowed, KES 10.50 would have gone out as 10
    and been reported paid in full. The override is refused when the merchant is made, and
    payments of a merchant that stored it earlier are refused with nothing sent."""
    cents = {"limits": {"KES": {"whole_units": False}}}
    with gateway.admin() as admin:
        made = admin.post("/admin/v1/merchants", json={"name": "Cents", "settings": cents})
    error = error_of(made, 400, "invalid_request_error", "invalid_amount_limits")
    assert error["param"] == "limits.KES.whole_units"
    db_execute(
        database_url,
        "UPDATE merchants SET settings = :s WHERE id = :id",
        s=json.dumps(cents),
        id=merchant.id,
    )
    pushes = sim_calls(sim_url, STK)
    for amount in ("10.50", "10"):
        refused = merchant.pay(amount=amount, currency="KES", phone="0708374149", reference=ref())
        error = error_of(refused, 400, "invalid_request_error", "invalid_amount_limits")
        assert error["param"] == "limits.KES.whole_units"
        assert "whole KES only" in error["message"]
    assert sim_calls(sim_url, STK) == pushes
    assert payment_count(database_url, merchant.id) == 0


# ----- kill switches and rollout ----------------------------------------------------------------
@pytest.mark.parametrize("scope", ["gateway", "provider", "merchant", "account"])
def test_kill_switch_refuses_before_anything_and_is_audited(
    scope: str, merchant: Merchant, gateway: Gateway, sim_url: str, database_url: str
) -> None:
    key_before = str(uuid.uuid4())
    done = merchant.pay(
        amount="10", currency="KES", phone="0708374149", reference="k0", idempotency_key=key_before
    )
    assert done.status_code == 201
    key = {
        "gateway": "gateway",
        "provider": "provider:mpesa",
        "merchant": f"merchant:{merchant.id}",
        "account": f"account:{merchant.accounts['mpesa']['id']}",
    }[scope]
    rows, pushes, polls = payment_count(database_url, merchant.id), sim_calls(sim_url, STK), 0
    with flag_off(gateway, key, reason="Safaricom incident INC-42"):
        refused = merchant.pay(amount="10", currency="KES", phone="0708374149", reference=ref())
        error = error_of(refused, 503, "provider_error", "provider_disabled")
        assert key in error["message"] and "INC-42" in error["message"]
        assert error["switch"] == key
        assert sim_calls(sim_url, STK) == pushes
        assert payment_count(database_url, merchant.id) == rows
        replay = merchant.pay(
            amount="10",
            currency="KES",
            phone="0708374149",
            reference="k0",
            idempotency_key=key_before,
        )  # an idempotent replay is answered even now
        assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
        momo = merchant.pay(amount="3", currency="EUR", phone=MOMO_PHONE, reference=ref())
        if scope in ("gateway", "merchant"):
            error_of(momo, 503, "provider_error", "provider_disabled")
        else:  # the M-Pesa path only
            assert momo.status_code == 201, momo.text
            polls += 1
    assert (
        merchant.pay(amount="10", currency="KES", phone="0708374149", reference=ref()).status_code
        == 201
    )
    with gateway.admin() as admin:
        entries = admin.get(
            "/admin/v1/audit", params={"action": "flag.set", "target": key, "limit": 2}
        ).json()["data"]
    back_on, off = entries
    assert (off["actor"], off["reason"]) == ("admin", "Safaricom incident INC-42")
    assert off["detail"]["after"]["enabled"] is False
    assert back_on["detail"]["before"]["enabled"] is False
    assert back_on["detail"]["after"]["enabled"] is True
    if scope in ("merchant", "account"):
        assert off["merchant_id"] == merchant.id


def test_rollout_admits_a_stable_share_of_merchants(
    merchant: Merchant, gateway: Gateway, sim_url: str
) -> None:
    bucket = rollout_bucket(merchant.id, "mpesa")
    with flag_off(gateway, "rollout:mpesa", percentage=bucket, reason="10% first"):
        for _ in range(2):  # the same answer every time
            refused = merchant.pay(amount="10", currency="KES", phone="0708374149", reference=ref())
            error = error_of(refused, 503, "provider_error", "provider_disabled")
            assert f"rolled out to {bucket}%" in error["message"]
        momo = merchant.pay(amount="3", currency="EUR", phone=MOMO_PHONE, reference=ref())
        assert momo.status_code == 201  # rollout:mpesa leaves MoMo alone
        set_flag(gateway, "rollout:mpesa", True, percentage=bucket + 1, reason="widen")
        ok = merchant.pay(amount="10", currency="KES", phone="0708374149", reference=ref())
        assert ok.status_code == 201, ok.text
        set_flag(gateway, "rollout:mpesa", False, percentage=100, reason="stop the rollout")
        error_of(
            merchant.pay(amount="10", currency="KES", phone="0708374149", reference=ref()),
            503,
            "provider_error",
            "provider_disabled",
        )


def test_a_flag_reaches_another_process_within_the_refresh_delay(
    merchant: Merchant, gateway: Gateway, tmp_path: Path
) -> None:
    refresh = 1.0
    with another_gateway(gateway.settings, tmp_path, flags_refresh_s=refresh) as second:
        other = Merchant(merchant.id, merchant.api_key, merchant.accounts, second)

        def pay_there() -> httpx.Response:
            return other.pay(amount="10", currency="KES", phone="0708374149", reference=ref())

        def seconds_until(status: int) -> float:
            started = time.monotonic()
            while pay_there().status_code != status:
                assert time.monotonic() - started < refresh + 2.0, "flag not applied in time"
                time.sleep(0.05)
            return time.monotonic() - started

        assert pay_there().status_code == 201  # its cache is warm
        key = f"merchant:{merchant.id}"
        with flag_off(gateway, key, reason="second process"):
            assert merchant.pay(amount="10", currency="KES", phone="0708374149").status_code == 503
            assert seconds_until(503) <= refresh + 0.5
        assert seconds_until(201) <= refresh + 0.5


def test_cli_sets_flags_and_reads_the_audit_log(
    merchant: Merchant, gateway: Gateway, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIPWA_DATABASE_URL", database_url)
    runner = CliRunner()
    key = f"merchant:{merchant.id}"
    result = runner.invoke(
        cli_app, ["flags", "set", key, "--off", "--reason", "fraud review", "--actor", "amina"]
    )
    assert result.exit_code == 0, result.output
    try:
        started = time.monotonic()
        while merchant.pay(amount="10", currency="KES", phone="0708374149").status_code != 503:
            assert time.monotonic() - started < gateway.settings.flags_refresh_s + 2.0
            time.sleep(0.1)
        listed = runner.invoke(cli_app, ["flags", "list", "--json"])
        assert listed.exit_code == 0, listed.output
        assert '"fraud review"' in listed.output
    finally:
        assert (
            runner.invoke(
                cli_app, ["flags", "set", key, "--on", "--reason", "cleared", "--actor", "amina"]
            ).exit_code
            == 0
        )
    log = runner.invoke(cli_app, ["audit", "list", "--target", key, "--json"])
    assert log.exit_code == 0, log.output
    assert log.output.index('"cleared"') < log.output.index('"fraud review"')  # newest first
    assert '"actor": "amina"' in log.output
    bad = runner.invoke(cli_app, ["flags", "set", "provider:airtel", "--off", "--reason", "x"])
    assert bad.exit_code == 1 and "invalid_flag_key" in bad.output
    no_zone = runner.invoke(cli_app, ["audit", "list", "--since", "2025-01-01T00:00"])
    assert no_zone.exit_code == 2


def test_flag_api_refuses_bad_changes(gateway: Gateway, merchant: Merchant) -> None:
    with gateway.admin() as admin:
        cases = [
            ("provider:airtel", {"enabled": False, "reason": "x"}, "invalid_flag_key", "key"),
            ("gateway", {"enabled": False}, "parameter_invalid", "reason"),
            ("gateway", {"enabled": False, "reason": ""}, "parameter_invalid", "reason"),
            (
                "provider:mpesa",
                {"enabled": True, "percentage": 5, "reason": "x"},
                "invalid_percentage",
                "percentage",
            ),
            (
                "rollout:momo",
                {"enabled": True, "percentage": 101, "reason": "x"},
                "parameter_invalid",
                "percentage",
            ),
            (
                "merchant:mer_nobody",
                {"enabled": False, "reason": "x"},
                "unknown_flag_target",
                "key",
            ),
        ]
        for key, body, code, param in cases:
            response = admin.put(f"/admin/v1/flags/{key}", json=body)
            assert response.status_code == 400, (key, response.text)
            assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (
                code,
                param,
            )
        assert admin.get("/admin/v1/flags").status_code == 200
    with gateway.client(merchant.api_key) as c:
        assert c.get("/admin/v1/flags").status_code == 401  # a merchant key is no admin token


# ----- shared limits across processes -----------------------------------------------------------
@pytest.fixture
def redis_prefix() -> Iterator[str]:
    import redis

    prefix = f"lipwa-test-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    yield prefix
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


def test_merchant_limit_holds_across_two_processes_sharing_redis(
    merchant_factory: Callable[..., Merchant],
    gateway: Gateway,
    sim_url: str,
    database_url: str,
    tmp_path: Path,
    redis_prefix: str,
) -> None:
    shop = merchant_factory(settings={"rate_limits": {"prompts": "5/minute"}})
    shared = {"redis_url": REDIS_URL, "redis_key_prefix": redis_prefix}
    pushes = sim_calls(sim_url, STK)
    with (
        another_gateway(gateway.settings, tmp_path, **shared) as one,
        another_gateway(gateway.settings, tmp_path, **shared) as two,
    ):
        bodies = [
            {"amount": str(10 + i), "currency": "KES", "phone": "0708374149", "reference": ref()}
            for i in range(40)
        ]
        responses = fire_through_both(one, two, shop.api_key, bodies)
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 429}
    assert statuses.count(201) == 5  # not 5 per process: one budget in Redis
    assert sim_calls(sim_url, STK) - pushes == 5
    assert payment_count(database_url, shop.id) == 5
    for r in responses:
        if r.status_code == 429:
            assert (
                r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
            )


def test_processes_sharing_redis_send_with_one_oauth_token(
    merchant: Merchant, gateway: Gateway, sim_url: str, tmp_path: Path, redis_prefix: str
) -> None:
    """Daraja may invalidate a token when another is minted: processes sharing Redis fetch
    one token per account between them, and every push of theirs carries it."""
    shared = {"redis_url": REDIS_URL, "redis_key_prefix": redis_prefix}
    mark = f"tk{uuid.uuid4().hex[:6]}"
    bodies = [
        {"amount": "10", "currency": "KES", "phone": f"0708{i:05d}5", "reference": f"{mark}{i}"}
        for i in range(16)
    ]
    with (
        another_gateway(gateway.settings, tmp_path, **shared) as one,
        another_gateway(gateway.settings, tmp_path, **shared) as two,
    ):
        responses = fire_through_both(one, two, merchant.api_key, bodies)
    assert [r.status_code for r in responses] == [201] * 16, [r.text for r in responses]
    pushes = httpx.get(f"{sim_url}/_sim/requests", params={"path": STK}).json()["requests"]
    ours = [r for r in pushes if str(r["body"].get("AccountReference", "")).startswith(mark)]
    assert len(ours) == 16
    assert len({r["headers"]["authorization"] for r in ours}) == 1


def test_rate_limits_fail_open_and_counted_when_redis_is_down(
    merchant_factory: Callable[..., Merchant], gateway: Gateway, tmp_path: Path
) -> None:
    def errors() -> float:
        return REGISTRY.get_sample_value("lipwa_rate_limit_storage_errors_total") or 0.0

    shop = merchant_factory(settings={"rate_limits": {"prompts": "1/minute"}})
    before = errors()
    with another_gateway(gateway.settings, tmp_path, redis_url="redis://127.0.0.1:1/0") as down:
        ready = httpx.get(f"{down.url}/health/ready")
        assert ready.status_code == 200 and ready.json()["info"]["redis"].startswith("error")
        for _ in range(2):  # over the 1/minute budget, but nothing can count it
            paid = down.client(shop.api_key).post(
                "/v1/payments",
                json={"amount": "10", "currency": "KES", "phone": "0708374149", "reference": ref()},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            assert paid.status_code == 201, paid.text
    assert errors() - before >= 4  # the API-key limit and the prompt budget, twice


def test_api_key_rate_limit(merchant: Merchant, gateway: Gateway, tmp_path: Path) -> None:
    with gateway.admin() as admin:
        spare = admin.post(f"/admin/v1/merchants/{merchant.id}/api-keys", json={"mode": "test"})
    before = hits("api_key")
    with another_gateway(gateway.settings, tmp_path, rate_limit_api_key="5/second") as tight:

        async def burst(key: str, n: int) -> list[httpx.Response]:
            async with httpx.AsyncClient(
                base_url=tight.url, headers={"Authorization": f"Bearer {key}"}
            ) as client:
                return await asyncio.gather(*(client.get("/v1/payments") for _ in range(n)))

        responses = asyncio.run(burst(merchant.api_key, 15))
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) <= 5 and statuses.count(429) >= 10
        refused = next(r for r in responses if r.status_code == 429)
        error_of(refused, 429, "rate_limit_error", "rate_limited")
        assert refused.headers["Retry-After"] == "1"
        assert {r.status_code for r in asyncio.run(burst(spare.json()["key"], 3))} == {200}
    assert hits("api_key") - before == statuses.count(429)


# ----- production defaults ----------------------------------------------------------------------
def test_production_defaults(
    merchant: Merchant, gateway: Gateway, sim: Simulator, sim_url: str, tmp_path: Path
) -> None:
    """10 prompts per 5 minutes per merchant, one open prompt per payer (Settings defaults)."""
    defaults = Settings.model_fields
    guard_defaults = {
        name: defaults[name].default
        for name in (
            "rate_limit_prompts",
            "rate_limit_api_key",
            "payer_lock_s",
            "same_amount_window_s",
            "duplicate_window_s",
        )
    }
    assert guard_defaults["rate_limit_prompts"] == "10/5minutes"
    sim.settings.prompt_seconds = 2.0
    with another_gateway(gateway.settings, tmp_path, **guard_defaults) as prod:
        shop = Merchant(merchant.id, merchant.api_key, merchant.accounts, prod)
        assert shop.pay(amount="10", currency="KES", phone="0708374100").status_code == 201
        busy = shop.pay(amount="11", currency="KES", phone="0708374100")
        error_of(busy, 429, "rate_limit_error", "payer_busy")
        for i in range(1, 10):
            ok = shop.pay(amount="10", currency="KES", phone=f"07083741{i:02d}")
            assert ok.status_code == 201, ok.text
        error_of(
            shop.pay(amount="10", currency="KES", phone="0708374199"),
            429,
            "rate_limit_error",
            "rate_limited",
        )


# ----- modes ------------------------------------------------------------------------------------
@contextmanager
def scratch_database(database_url: str) -> Iterator[str]:
    """A database of its own (SQLite file or PostgreSQL database), migrated."""
    if database_url.startswith("sqlite"):
        path = Path(database_url.split("///", 1)[1]).with_name(f"modes-{uuid.uuid4().hex}.db")
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        yield url
        return
    import asyncpg

    name = f"lipwa_modes_{uuid.uuid4().hex[:10]}"
    base, _, _ = database_url.rpartition("/")
    dsn = database_url.replace("postgresql+asyncpg", "postgresql")

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        url = f"{base}/{name}"
        upgrade(url)
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def check_startup(settings: Settings) -> None:
    async def run() -> None:
        container = Container.build(settings)
        try:
            await container.check_startup()
        finally:
            await container.close()

    asyncio.run(run())


def test_mode_is_checked_at_start_up_and_per_request(
    gateway: Gateway, sim_url: str, sim: Simulator, tmp_path: Path
) -> None:
    from lipwa.cli_ops import mode_problem

    with scratch_database(gateway.settings.database_url) as url:
        base = Settings(**{**gateway.settings.model_dump(), "database_url": url})
        with another_gateway(base, tmp_path, mode="sandbox") as sandbox:
            shop = create_merchant(sandbox, sim_url)  # sandbox accounts, a test key
            with sandbox.admin() as admin:
                live = admin.post(f"/admin/v1/merchants/{shop.id}/api-keys", json={"mode": "live"})
            with sandbox.client(live.json()["key"]) as c:
                error = error_of(
                    c.get("/v1/payments"), 403, "permission_error", "live_mode_disabled"
                )
                assert "LIPWA_MODE=sandbox" in error["message"]
            with shop.client() as c:
                assert c.get("/v1/payments").status_code == 200
        sandbox_only = Settings(**{**base.model_dump(), "mode": "sandbox"})
        with pytest.raises(ConfigurationError, match=r"1 active live API key"):
            check_startup(sandbox_only)
        # Started as `lipwa serve` starts it: uvicorn's default log config would unhook its loggers
        # from the masked root handler for every later test.
        config = uvicorn.Config(create_app(sandbox_only), port=free_port(), log_config=None)
        server = uvicorn.Server(config)
        with pytest.raises(SystemExit):  # the server refuses to start too
            asyncio.run(server.serve())
        problem = mode_problem(sandbox_only)  # what `lipwa serve` prints before exiting
        assert problem is not None and "LIPWA_MODE=mixed" in problem
        production = Settings(**{**base.model_dump(), "mode": "production"})
        with pytest.raises(ConfigurationError) as info:
            check_startup(production)
        assert "test API key" in str(info.value) and "sandbox provider account" in str(info.value)
        check_startup(Settings(**{**base.model_dump(), "mode": "mixed"}))


# ----- phone lookup -----------------------------------------------------------------------------
def test_phone_lookup(merchant: Merchant, gateway: Gateway, tmp_path: Path) -> None:
    with merchant.client() as c:
        mpesa = c.post("/v1/phone-lookup", json={"phone": "0708 374 149", "country": "KE"})
        assert mpesa.status_code == 200, mpesa.text
        assert mpesa.json() == {
            "object": "phone_lookup",
            "e164": "+254708374149",
            "msisdn": "254708374149",
            "country": "KE",
            "network": "safaricom",
            "provider": "mpesa",
            "accounts": [merchant.accounts["mpesa"]["id"]],
            "supported": True,
        }
        momo = c.post("/v1/phone-lookup", json={"phone": "+250788123456"}).json()
        assert (momo["network"], momo["provider"]) == ("mtn_rw", "momo")
        assert momo["accounts"] == [merchant.accounts["momo"]["id"]]
        airtel = c.post("/v1/phone-lookup", json={"phone": "+254733123456"}).json()
        assert (airtel["network"], airtel["provider"], airtel["supported"]) == (
            "airtel_ke",
            None,
            False,
        )
        bad = c.post("/v1/phone-lookup", json={"phone": "12345"})
        assert error_of(bad, 400, "invalid_request_error", "invalid_phone")["param"] == "phone"
    with gateway.admin() as admin:
        live = admin.post(f"/admin/v1/merchants/{merchant.id}/api-keys", json={"mode": "live"})
    with gateway.client(live.json()["key"]) as c:
        looked = c.post("/v1/phone-lookup", json={"phone": "+254708374149"}).json()
        assert (looked["provider"], looked["accounts"], looked["supported"]) == ("mpesa", [], False)
        refused = c.post(
            "/v1/payments",
            json={"amount": "10", "currency": "KES", "phone": "+254708374149", "reference": "x"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        error = error_of(refused, 400, "invalid_request_error", "no_account_for_network")
        assert "M-Pesa" in error["message"] and "production" in error["message"]
    # The operator's prefix table reaches both the lookup and payments.
    with another_gateway(gateway.settings, tmp_path, phone_prefixes="25473=safaricom") as fixed:
        with fixed.client(merchant.api_key) as c:
            moved = c.post("/v1/phone-lookup", json={"phone": "+254733123456"}).json()
            assert (moved["network"], moved["provider"], moved["supported"]) == (
                "safaricom",
                "mpesa",
                True,
            )
        paid = Merchant(merchant.id, merchant.api_key, merchant.accounts, fixed).pay(
            amount="10", currency="KES", phone="0733123456"
        )
        assert paid.status_code == 201, paid.text


def test_phone_lookup_offers_only_the_account_of_the_numbers_market(
    merchant_factory: Callable[..., Merchant],
) -> None:
    """A MoMo Uganda account cannot charge a Rwandan wallet (nor ask MTN Uganda about it)."""
    uganda = merchant_factory(momo_currency="UGX")
    with uganda.client() as c:
        home = c.post("/v1/phone-lookup", json={"phone": "+256772123456"}).json()
        abroad = c.post("/v1/phone-lookup", json={"phone": "+250788123456"}).json()
    assert home["accounts"] == [uganda.accounts["momo"]["id"]] and home["supported"]
    assert (abroad["provider"], abroad["accounts"], abroad["supported"]) == ("momo", [], False)


# ----- audit of admin actions -------------------------------------------------------------------
def test_admin_actions_are_audited_without_secrets(merchant: Merchant, gateway: Gateway) -> None:
    with gateway.admin() as admin:
        response = admin.get("/admin/v1/audit", params={"merchant_id": merchant.id})
        assert response.status_code == 200
        entries = response.json()["data"]
        assert [e["action"] for e in entries] == [
            "api_key.created",
            "account.created",
            "account.created",
            "merchant.created",
        ]
        assert all(e["actor"] == "admin" for e in entries)
        assert entries[-1]["target"] == merchant.id
        assert {e["detail"].get("provider") for e in entries[1:3]} == {"mpesa", "momo"}
        text = response.text
        assert merchant.api_key not in text and "passkey" not in text and "secret" not in text
        one = admin.get("/admin/v1/audit", params={"merchant_id": merchant.id, "limit": 1})
        assert [e["action"] for e in one.json()["data"]] == ["api_key.created"]
        future = admin.get("/admin/v1/audit", params={"since": "2999-01-01T00:00:00Z"})
        assert future.json()["data"] == []
        naive = admin.get("/admin/v1/audit", params={"since": "2025-01-01T00:00:00"})
        assert naive.status_code == 400
        by_action = admin.get(
            "/admin/v1/audit", params={"action": "merchant.created", "target": merchant.id}
        ).json()["data"]
        assert len(by_action) == 1
