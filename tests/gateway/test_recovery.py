"""Nothing lost, nothing twice: payments whose callback never came still settle.

The gateway under test runs the recovery worker on a short schedule (first check 5 s after
the send, then 0.5 s doubling to 2 s): see ``tests/gateway/conftest.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from lipwa.api.app import create_app
from lipwa.cli import app as cli_app
from lipwa.clock import utcnow
from lipwa.config import Settings
from lipwa.container import Container
from lipwa.providers.base import SendOutcome, SendResult
from lipwa.services.accounts import Caller
from lipwa.services.recovery import RecoveryService
from lipwa.simulator.core import Simulator
from lipwa.simulator.testing import free_port, serve_in_thread
from lipwa.store.db import make_engine, make_sessionmaker
from lipwa.store.migrate import upgrade
from lipwa.store.tables import InboundCallback, Payment
from lipwa.vault import generate_key_text
from tests.gateway.conftest import (
    ADMIN_TOKEN,
    Gateway,
    Merchant,
    create_merchant,
    db_rows,
    events_for,
)
from tests.gateway.test_callbacks import settled_without_callback
from tests.gateway.test_guards import flag_off
from tests.gateway.test_reconciliation import cli_env

MOMO_PHONE = "+250788123456"  # MTN Rwanda; the simulator settles it as paid
FINAL = {"succeeded", "failed"}


# ----- helpers ----------------------------------------------------------------------------------
def set_faults(sim_url: str, **faults: float) -> None:
    httpx.put(f"{sim_url}/_sim/faults", json=faults).raise_for_status()


def scenario(sim_url: str, provider: str, phone: str, outcome: str) -> None:
    body = {"provider": provider, "phone": phone, "outcome": outcome}
    httpx.put(f"{sim_url}/_sim/scenario", json=body).raise_for_status()


def sim_requests(sim_url: str, path: str, method: str | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = httpx.get(
        f"{sim_url}/_sim/requests", params={"path": path}
    ).json()["requests"]
    return [r for r in rows if method is None or r["method"] == method]


def stk_pushes_to(sim_url: str, msisdn: str) -> int:
    return sum(
        1
        for r in sim_requests(sim_url, "/mpesa/stkpush/")
        if isinstance(r["body"], dict) and r["body"].get("PhoneNumber") == msisdn
    )


def pay(merchant: Merchant, amount: str, currency: str, phone: str) -> dict[str, Any]:
    """Create a payment with a reference of its own (the duplicate guard watches references)."""
    response = merchant.pay(
        amount=amount, currency=currency, phone=phone, reference=f"r-{uuid.uuid4().hex[:8]}"
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def payment_row(database_url: str, payment_id: str) -> dict[str, Any]:
    return db_rows(database_url, "SELECT * FROM payments WHERE id = :id", id=payment_id)[0]


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def momo_merchant(merchant_factory: Callable[..., Merchant]) -> Merchant:
    return merchant_factory(momo_currency="RWF")


def insert_rows(database_url: str, *rows: Any) -> None:
    """Write rows as a dead process would have left them."""

    async def run() -> None:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                session.add_all(rows)
        finally:
            await engine.dispose()

    asyncio.run(run())


def written_ahead(merchant: Merchant, provider: str, phone: str, age_s: float) -> Payment:
    """A payment stored before its send, by a process that died before recording the answer."""
    created = utcnow() - timedelta(seconds=age_s)
    request_id = str(uuid.uuid4())
    account = merchant.accounts[provider]
    return Payment(
        id=f"pay_crash{uuid.uuid4().hex[:16]}",
        merchant_id=merchant.id,
        account_id=account["id"],
        mode="test",
        provider=provider,
        channel="prompt",
        status="pending",
        amount=Decimal("100") if provider == "momo" else Decimal("10"),
        currency=account["currency"],
        phone=phone,
        network="mtn" if provider == "momo" else "safaricom",
        reference="crash-1",
        description="",
        provider_reference="crash-1",
        provider_description="crash-1",
        meta={},
        provider_request_id=request_id,
        provider_ref=request_id if provider == "momo" else None,
        send_state="not_sent",
        check_attempts=0,
        next_check_at=utcnow(),
        created_at=created,
        updated_at=created,
    )


# ----- dropped callbacks ----------------------------------------------------------------------
def test_dropped_callbacks_still_reach_the_right_final_state_by_query(
    merchant_factory: Callable[..., Merchant], sim_url: str, sim: Simulator
) -> None:
    merchant = momo_merchant(merchant_factory)
    set_faults(sim_url, callback_drop_pct=100)
    scenario(sim_url, "momo", "250788123457", "rejected")
    paid = pay(merchant, "10", "KES", "0708374149")
    cancelled = pay(merchant, "10", "KES", "0708371032")
    momo_paid = pay(merchant, "100", "RWF", MOMO_PHONE)
    momo_rejected = pay(merchant, "100", "RWF", "+250788123457")

    finals = {
        name: merchant.wait_final(p["id"], timeout=20)
        for name, p in {
            "paid": paid,
            "cancelled": cancelled,
            "momo_paid": momo_paid,
            "momo_rejected": momo_rejected,
        }.items()
    }
    assert {n: p["status"] for n, p in finals.items()} == {
        "paid": "succeeded",
        "cancelled": "failed",
        "momo_paid": "succeeded",
        "momo_rejected": "failed",
    }
    assert {p["resolved_by"] for p in finals.values()} == {"query"}
    assert finals["cancelled"]["failure_code"] == "payer_declined"
    assert finals["momo_rejected"]["failure_code"] == "payer_declined"
    assert finals["momo_paid"]["receipt"]  # MoMo's status carries financialTransactionId
    assert sim.callbacks and all(c.dropped for c in sim.callbacks)
    for p in finals.values():
        assert events_for(merchant, p["id"]) == ["payment.created", f"payment.{p['status']}"]


def test_being_processed_keeps_it_pending_until_the_provider_answers(
    merchant_factory: Callable[..., Merchant], sim_url: str, database_url: str
) -> None:
    merchant = momo_merchant(merchant_factory)
    set_faults(sim_url, callback_drop_pct=100)
    httpx.put(f"{sim_url}/_sim/settings", json={"prompt_seconds": 7}).raise_for_status()
    mpesa = pay(merchant, "10", "KES", "0708374149")
    momo = pay(merchant, "100", "RWF", MOMO_PHONE)
    checkout_id = payment_row(database_url, mpesa["id"])["provider_ref"]

    def queried() -> bool:
        return any(
            r["body"].get("CheckoutRequestID") == checkout_id
            for r in sim_requests(sim_url, "/mpesa/stkpushquery/")
        )

    wait_for(queried, timeout=10, what="the first STK query")
    with merchant.client() as c:  # the prompt is still open: "being processed"
        assert c.get(f"/v1/payments/{mpesa['id']}").json()["status"] == "pending"
        assert c.get(f"/v1/payments/{momo['id']}").json()["status"] == "pending"

    for payment in (mpesa, momo):
        final = merchant.wait_final(payment["id"], timeout=20)
        assert (final["status"], final["resolved_by"]) == ("succeeded", "query")
        assert events_for(merchant, payment["id"]) == ["payment.created", "payment.succeeded"]
    stk_queries = [
        r
        for r in sim_requests(sim_url, "/mpesa/stkpushquery/")
        if r["body"].get("CheckoutRequestID") == checkout_id
    ]
    status_gets = sim_requests(
        sim_url,
        f"/collection/v1_0/requesttopay/{payment_row(database_url, momo['id'])['provider_ref']}",
    )
    assert len(stk_queries) >= 2 and len(status_gets) >= 2  # asked while open, then again


# ----- the answer to the send was lost --------------------------------------------------------
def test_stk_push_whose_answer_timed_out_is_sent_once_and_never_expired(
    merchant: Merchant, sim_url: str, gateway: Gateway, database_url: str
) -> None:
    warm = pay(merchant, "10", "KES", "0708374149")  # token cached
    assert merchant.wait_final(warm["id"])["status"] == "succeeded"
    set_faults(
        sim_url,
        callback_drop_pct=100,
        latency_ms=(gateway.settings.provider_read_timeout_s + 1.5) * 1000,
    )
    payment = pay(merchant, "10", "KES", "0708374188")
    assert payment["status"] == "unknown"
    set_faults(sim_url, latency_ms=0)

    # The worker looks at it, finds no CheckoutRequestID to ask about, and leaves it unknown
    # for reconciliation instead of pushing again or expiring it.
    wait_for(
        lambda: payment_row(database_url, payment["id"])["next_check_at"] is None,
        timeout=15,
        what="the worker to park the payment",
    )
    row = payment_row(database_url, payment["id"])
    assert (row["status"], row["send_state"], row["provider_ref"]) == ("unknown", "ambiguous", None)
    assert row["check_attempts"] >= 1
    assert stk_pushes_to(sim_url, "254708374188") == 1

    # Safaricom did take it; its (late) callback still settles the payment.
    [record] = [
        r
        for r in httpx.get(f"{sim_url}/_sim/transactions").json()["mpesa"]
        if r.get("phone") == "254708374188"
    ]
    callback = {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": record["merchant_request_id"],
                "CheckoutRequestID": record["checkout_request_id"],
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": 10.0},
                        {"Name": "MpesaReceiptNumber", "Value": record["receipt"]},
                        {"Name": "PhoneNumber", "Value": 254708374188},
                    ]
                },
            }
        }
    }
    url = f"{merchant.accounts['mpesa']['callback_url']}/stk/{payment['id']}"
    assert httpx.post(url, json=callback).status_code == 200
    final = merchant.wait_final(payment["id"])
    assert (final["status"], final["receipt"]) == ("succeeded", record["receipt"])
    assert stk_pushes_to(sim_url, "254708374188") == 1


def test_an_stk_answer_that_comes_after_the_worker_gave_up_is_still_checked(
    sim_url: str, sim: Simulator, tmp_path: Path
) -> None:
    """The worker makes a send that has not answered in ``stale_send_after_s`` unknown, with
    no more checks (there is nothing to ask about yet). When Daraja's answer then arrives with
    its CheckoutRequestID, the payment must be checked again: else a payment the payer paid,
    whose callback was lost, stays unknown for good."""
    # Its own database and gateway, so no other worker touches the payment. The race is
    # scaled down: a send of ~2 s (token, then push, 1 s each) against a 1 s stale window.
    url = f"sqlite+aiosqlite:///{tmp_path / 'slow.db'}"
    upgrade(url)
    port = free_port()
    settings = Settings(
        database_url=url,
        public_url=f"http://127.0.0.1:{port}",
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        encryption_keys=generate_key_text("v1"),  # type: ignore[arg-type]
        first_check_after_s=0.3,
        payer_lock_s=0,
        worker_jobs="payment_checks",
        check_backoff_initial_s=0.5,
        check_backoff_max_s=1.0,
        stale_send_after_s=1.0,
    )
    with serve_in_thread(create_app(settings), port=port) as gateway_url:
        gateway = Gateway(url=gateway_url, settings=settings, log_path=tmp_path / "unused.log")
        merchant = create_merchant(gateway, sim_url)
        set_faults(sim_url, callback_drop_pct=100, latency_ms=1000)
        payment = pay(merchant, "10", "KES", "0708374149")
        set_faults(sim_url, latency_ms=0)
        row = payment_row(url, payment["id"])
        assert row["send_state"] == "sent" and row["provider_ref"], row
        final = merchant.wait_final(payment["id"], timeout=10)
        timeline = events_for(merchant, payment["id"])
    assert final["status"] == "succeeded", payment_row(url, payment["id"])
    assert final["resolved_by"] == "query"
    # the race was staged: the worker had made it unknown while the push was in flight
    assert "payment.unknown" in timeline, timeline


def test_momo_request_whose_answer_timed_out_resolves_by_query_with_one_reference(
    merchant_factory: Callable[..., Merchant], sim_url: str, gateway: Gateway
) -> None:
    merchant = momo_merchant(merchant_factory)
    warm = pay(merchant, "100", "RWF", MOMO_PHONE)
    assert merchant.wait_final(warm["id"])["status"] == "succeeded"
    before = len(sim_requests(sim_url, "/collection/v1_0/requesttopay", "POST"))
    set_faults(
        sim_url,
        callback_drop_pct=100,
        latency_ms=(gateway.settings.provider_read_timeout_s + 1.5) * 1000,
    )
    payment = pay(merchant, "100", "RWF", MOMO_PHONE)
    assert payment["status"] == "unknown"
    set_faults(sim_url, latency_ms=0)

    final = merchant.wait_final(payment["id"], timeout=20)
    assert (final["status"], final["resolved_by"]) == ("succeeded", "query")
    posts = sim_requests(sim_url, "/collection/v1_0/requesttopay", "POST")[before:]
    assert posts and {p["headers"].get("x-reference-id") for p in posts} == {
        p["headers"]["x-reference-id"] for p in posts[:1]
    }


# ----- the process died after the write-ahead ---------------------------------------------------
def test_crash_after_write_ahead_momo_is_sent_again_with_the_same_reference(
    merchant_factory: Callable[..., Merchant], sim_url: str, database_url: str
) -> None:
    merchant = momo_merchant(merchant_factory)
    orphan = written_ahead(merchant, "momo", "250788123456", age_s=30)
    insert_rows(database_url, orphan)
    final = merchant.wait_final(orphan.id, timeout=20)
    assert final["status"] == "succeeded"
    posts = [
        p
        for p in sim_requests(sim_url, "/collection/v1_0/requesttopay", "POST")
        if p["headers"].get("x-reference-id") == orphan.provider_request_id
    ]
    assert len(posts) == 1
    # The callback can settle the payment before the worker records the provider's answer.
    wait_for(
        lambda: payment_row(database_url, orphan.id)["send_state"] == "sent",
        timeout=10,
        what="the resend recorded as sent",
    )


def test_a_resend_waits_while_a_kill_switch_is_thrown(
    merchant_factory: Callable[..., Merchant], gateway: Gateway, sim_url: str, database_url: str
) -> None:
    """The operator switched the merchant off after its process died mid-send: the worker's
    re-send is held like any send, and goes once the switch is back on."""
    merchant = momo_merchant(merchant_factory)
    orphan = written_ahead(merchant, "momo", "250788123456", age_s=30)

    def posts() -> int:
        return sum(
            1
            for p in sim_requests(sim_url, "/collection/v1_0/requesttopay", "POST")
            if p["headers"].get("x-reference-id") == orphan.provider_request_id
        )

    with flag_off(gateway, f"merchant:{merchant.id}"):
        insert_rows(database_url, orphan)
        time.sleep(4)  # several worker rounds
        assert posts() == 0
        held = payment_row(database_url, orphan.id)
        assert held["status"] == "pending" and held["send_state"] == "not_sent"
    assert merchant.wait_final(orphan.id, timeout=20)["status"] == "succeeded"
    assert posts() == 1


def test_a_late_refusal_of_a_send_the_worker_already_repeated_fails_nothing(
    merchant_factory: Callable[..., Merchant], gateway: Gateway, database_url: str
) -> None:
    """The API's request-to-pay stalled past the worker's re-send, which MTN took (same
    X-Reference-Id), then came back refused (throttled): that refusal speaks for the stalled
    attempt only. The payment stays open for recovery, never failed while the payer may be
    approving the worker's prompt."""
    merchant = momo_merchant(merchant_factory)
    stalled = written_ahead(merchant, "momo", "250788123456", age_s=90)
    stalled.send_state = "sent"  # the worker's re-send, recorded
    stalled.next_check_at = utcnow() + timedelta(hours=1)
    insert_rows(database_url, stalled)
    refused = SendResult(
        SendOutcome.REJECTED,
        error_code="http_429",
        failure_code="provider_unavailable",
        transient=True,
    )
    caller = Caller(merchant_id=merchant.id, mode="test", key_id="k")

    async def late_answer() -> dict[str, Any]:
        container = Container.build(gateway.settings)
        try:
            outcome = await container.collect._record(caller, stalled, refused, "late-key")
            return outcome.body
        finally:
            await container.close()

    answered = asyncio.run(late_answer())
    assert answered["status"] == "pending"
    row = payment_row(database_url, stalled.id)
    assert (row["status"], row["send_state"]) == ("pending", "sent")


def test_a_late_unclear_answer_that_names_its_checkout_id_is_checked_again(
    merchant: Merchant, gateway: Gateway, database_url: str
) -> None:
    """The worker gave up waiting (unknown, no more checks); Daraja's answer then came, with a
    CheckoutRequestID but no ResponseCode: now there is something to ask about, so ask."""
    parked = written_ahead(merchant, "mpesa", "254708374149", age_s=90)
    parked.status, parked.send_state, parked.next_check_at = "unknown", "ambiguous", None
    insert_rows(database_url, parked)
    unclear = SendResult(
        SendOutcome.AMBIGUOUS,
        provider_ref="ws_CO_" + uuid.uuid4().hex[:20],
        error_message="Daraja answered without a ResponseCode",
    )
    caller = Caller(merchant_id=merchant.id, mode="test", key_id="k")

    async def late_answer() -> None:
        container = Container.build(gateway.settings)
        try:
            await container.collect._record(caller, parked, unclear, "late-key-2")
        finally:
            await container.close()

    asyncio.run(late_answer())
    row = payment_row(database_url, parked.id)
    assert row["provider_ref"] == unclear.provider_ref and row["next_check_at"] is not None


def test_crash_after_write_ahead_mpesa_is_never_pushed_but_made_unknown(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    orphan = written_ahead(merchant, "mpesa", "254708374177", age_s=30)
    insert_rows(database_url, orphan)
    wait_for(
        lambda: payment_row(database_url, orphan.id)["status"] == "unknown",
        timeout=10,
        what="the worker to mark it unknown",
    )
    row = payment_row(database_url, orphan.id)
    assert (row["send_state"], row["next_check_at"]) == ("ambiguous", None)
    assert stk_pushes_to(sim_url, "254708374177") == 0
    assert events_for(merchant, orphan.id) == ["payment.unknown"]


def test_a_young_write_ahead_is_left_alone_while_its_send_may_be_in_flight(
    merchant: Merchant, sim_url: str, database_url: str, gateway: Gateway
) -> None:
    orphan = written_ahead(merchant, "mpesa", "254708374166", age_s=1)
    insert_rows(database_url, orphan)
    time.sleep(2.5)  # the worker has seen it by now
    row = payment_row(database_url, orphan.id)
    assert (row["status"], row["send_state"]) == ("pending", "not_sent")
    assert row["check_attempts"] >= 1
    # Next look: when the send has surely ended.
    assert row["next_check_at"] is not None


# ----- callbacks stored but never applied -------------------------------------------------------
def test_stored_but_unapplied_callbacks_are_swept_with_the_accounts_token(
    merchant: Merchant, sim: Simulator, sim_url: str, gateway: Gateway, database_url: str
) -> None:
    # Paid at Daraja (the sweep's STK query confirms it), its callback lost on the way.
    payment, checkout_id = settled_without_callback(
        merchant, sim, sim_url, database_url, "254708374155", "success"
    )
    token = merchant.accounts["mpesa"]["callback_url"].rstrip("/").split("/")[-1]

    def stored(hint: str, code: int, receipt: str | None) -> InboundCallback:
        body: dict[str, Any] = {
            "MerchantRequestID": "1-2-3",
            "CheckoutRequestID": checkout_id,
            "ResultCode": code,
            "ResultDesc": "test",
        }
        if receipt:
            body["CallbackMetadata"] = {
                "Item": [
                    {"Name": "Amount", "Value": 10.0},
                    {"Name": "MpesaReceiptNumber", "Value": receipt},
                ]
            }
        return InboundCallback(
            payment_id=payment["id"],
            kind="stk",
            method="POST",
            path=f"/callbacks/{hint}…/stk/{payment['id']}",
            headers={},
            body=json.dumps({"Body": {"stkCallback": body}}),
            received_at=utcnow() - timedelta(seconds=30),
        )

    wrong_hint = "zzzz" if not token.startswith("zzzz") else "yyyy"
    insert_rows(database_url, stored(wrong_hint, 1032, None), stored(token[:4], 0, "SWEPT00001"))

    async def sweep() -> int:  # now, before the payment's own status check settles it
        container = Container.build(gateway.settings)
        try:
            return await container.recovery.sweep_callbacks()
        finally:
            await container.close()

    asyncio.run(sweep())
    final = merchant.wait_final(payment["id"], timeout=15)
    assert (final["status"], final["resolved_by"], final["receipt"]) == (
        "succeeded",
        "callback",
        "SWEPT00001",
    )
    rows = db_rows(
        database_url,
        "SELECT outcome, processed_at FROM inbound_callbacks WHERE payment_id = :id ORDER BY id",
        id=payment["id"],
    )
    assert [r["outcome"] for r in rows] == ["invalid", "applied"]


# ----- manual recovery ----------------------------------------------------------------------------
def test_refresh_asks_the_provider_now(
    merchant_factory: Callable[..., Merchant], sim_url: str, gateway: Gateway
) -> None:
    merchant = momo_merchant(merchant_factory)
    scenario(sim_url, "mpesa", "254708374144", "no_callback")
    scenario(sim_url, "momo", "250788123444", "no_callback")
    mpesa = pay(merchant, "10", "KES", "0708374144")
    momo = pay(merchant, "100", "RWF", "+250788123444")
    time.sleep(0.6)  # the payer answered; no callback will come
    with merchant.client() as c:
        for payment in (mpesa, momo):
            response = c.post(f"/v1/payments/{payment['id']}/refresh")
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["status"], body["resolved_by"]) == ("succeeded", "query")
            again = c.post(f"/v1/payments/{payment['id']}/refresh").json()
            assert again == body  # final: returned as it is
        missing = c.post("/v1/payments/pay_doesnotexist/refresh")
        assert missing.status_code == 404
    other = merchant_factory()
    with other.client() as c:
        assert c.post(f"/v1/payments/{mpesa['id']}/refresh").status_code == 404


def test_recover_cli_checks_every_open_payment_with_progress(
    merchant_factory: Callable[..., Merchant], sim_url: str, gateway: Gateway
) -> None:
    merchant = momo_merchant(merchant_factory)
    scenario(sim_url, "mpesa", "254708374133", "no_callback")
    scenario(sim_url, "momo", "250788123433", "no_callback")
    since = utcnow().isoformat()
    ids = [
        pay(merchant, "10", "KES", "0708374133")["id"],
        pay(merchant, "100", "RWF", "+250788123433")["id"],
    ]
    time.sleep(0.6)
    settings = gateway.settings
    assert settings.encryption_keys is not None
    env = {
        "LIPWA_DATABASE_URL": settings.database_url,
        "LIPWA_ENCRYPTION_KEYS": settings.encryption_keys.get_secret_value(),
        "LIPWA_PUBLIC_URL": settings.public_url,
        "LIPWA_LOG_JSON": "false",
    }
    result = CliRunner().invoke(
        cli_app, ["recover", "--merchant", merchant.id, "--since", since], env=env
    )
    assert result.exit_code == 0, result.output
    assert "Checking open payments" in result.output
    assert "Checked 2 open payment(s)." in result.output
    assert "succeeded" in result.output
    with merchant.client() as c:
        for pid in ids:
            payment = c.get(f"/v1/payments/{pid}").json()
            assert (payment["status"], payment["resolved_by"]) == ("succeeded", "query")
    bad = CliRunner().invoke(cli_app, ["recover", "--since", "2026-01-01T00:00:00"], env=env)
    assert bad.exit_code != 0 and "time zone" in bad.output


def test_recover_cli_exits_1_and_names_the_checks_that_could_not_run(
    merchant: Merchant, sim_url: str, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario(sim_url, "mpesa", "254708374134", "pending_forever")
    since = utcnow().isoformat()
    stuck = pay(merchant, "10", "KES", "0708374134")["id"]

    async def broken(self: RecoveryService, payment_id: str, source: str = "worker") -> Any:
        raise ConnectionResetError("database went away")

    monkeypatch.setattr(RecoveryService, "check", broken)
    result = CliRunner().invoke(
        cli_app, ["recover", "--merchant", merchant.id, "--since", since], env=cli_env(gateway)
    )
    assert result.exit_code == 1, result.output
    assert "1 check(s) failed" in result.output and stuck in result.output


def test_recovery_stats_show_backlog_by_age_and_what_resolved_payments(
    merchant: Merchant, sim_url: str, gateway: Gateway
) -> None:
    scenario(sim_url, "mpesa", "254708374122", "pending_forever")
    scenario(sim_url, "mpesa", "254708374111", "no_callback")
    stuck = pay(merchant, "10", "KES", "0708374122")
    settled = pay(merchant, "10", "KES", "0708374111")
    time.sleep(0.6)
    with merchant.client() as c:
        assert c.post(f"/v1/payments/{settled['id']}/refresh").json()["status"] == "succeeded"
    with gateway.admin() as admin:
        response = admin.get("/admin/v1/recovery", params={"merchant_id": merchant.id})
        assert response.status_code == 200, response.text
        stats = response.json()
        assert httpx.get(f"{gateway.url}/admin/v1/recovery").status_code == 401
    assert stats["backlog"]["pending"] == {
        "total": 1,
        "lt_1m": 1,
        "1m_5m": 0,
        "5m_60m": 0,
        "gt_1h": 0,
    }
    assert stats["backlog"]["unknown"]["total"] == 0
    assert stats["resolved_last_24h"]["query"] == 1
    [oldest] = stats["oldest_unresolved"]
    assert (oldest["id"], oldest["status"]) == (stuck["id"], "pending")
    assert 0 <= oldest["age_s"] < 60


# ----- circuit breaker ----------------------------------------------------------------------------
def test_circuit_breaker_fails_fast_then_half_opens_and_closes(
    merchant: Merchant, sim_url: str, gateway: Gateway
) -> None:
    account_id = merchant.accounts["mpesa"]["id"]
    set_faults(sim_url, error_pct=100)
    for _ in range(5):
        failed = pay(merchant, "10", "KES", "0708374149")
        assert (failed["status"], failed["failure_code"]) == ("failed", "provider_unavailable")
    calls_before = len(sim_requests(sim_url, "/"))

    refused = merchant.pay(amount="10", currency="KES", phone="0708374149")
    assert refused.status_code == 503
    assert refused.json()["error"] == {
        "type": "provider_error",
        "code": "provider_unavailable",
        "message": "M-Pesa is not answering; try again in a minute",
        "param": None,
    }
    # The provider was not called for it: no token fetch, no push. (Meanwhile the gateway's
    # worker may still ask about older payments and payouts of other tests, with tokens it
    # has cached.)
    paths = {r["path"] for r in sim_requests(sim_url, "/")[calls_before:]}
    assert not paths & {"/oauth/v1/generate", "/mpesa/stkpush/v1/processrequest"}, paths
    with merchant.client() as c:
        assert len(c.get("/v1/payments", params={"limit": 100}).json()["data"]) == 5
    with gateway.admin() as admin:
        circuits = admin.get("/admin/v1/circuits").json()["data"]
    [mine] = [x for x in circuits if x["account_id"] == account_id]
    assert (mine["state"], mine["consecutive_failures"]) == ("open", 5)
    ready = httpx.get(f"{gateway.url}/health/ready")
    assert ready.status_code == 200
    assert account_id in {x["account_id"] for x in ready.json()["info"]["circuits_open"]}

    set_faults(sim_url, error_pct=0)
    time.sleep(gateway.settings.circuit_cooldown_s + 0.1)
    trial = merchant.pay(amount="10", currency="KES", phone="0708374101")  # half-open trial
    # (succeeded already when its callback beat the answer, as on a loaded machine)
    assert trial.status_code == 201 and trial.json()["status"] in {"pending", "succeeded"}
    with gateway.admin() as admin:
        circuits = admin.get("/admin/v1/circuits").json()["data"]
    assert account_id not in {x["account_id"] for x in circuits}
    after = merchant.pay(amount="10", currency="KES", phone="0708374102")
    assert after.status_code == 201
