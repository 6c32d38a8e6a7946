"""Payouts end to end: M-Pesa B2C v3 and MoMo transfers through the real gateway, database and
simulator. A payout is never sent twice, whatever fails in between (the crash tests at the end
kill a real gateway process between write-ahead and send, and while it waits for the answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from lipwa.clock import utcnow
from lipwa.providers.base import SendOutcome
from lipwa.providers.mpesa.client import MpesaClient
from lipwa.providers.mpesa.credentials import MpesaCredentials
from lipwa.providers.tokens import TokenCache
from lipwa.services.idempotency import request_hash
from lipwa.services.payouts import PayoutIn, approval_threshold
from lipwa.simulator.core import Simulator
from lipwa.simulator.testing import free_port
from lipwa.store.db import make_engine, make_sessionmaker
from lipwa.store.tables import IdempotencyKey, Payout
from tests.gateway.conftest import (
    ADMIN_TOKEN,
    Gateway,
    Merchant,
    create_merchant,
    db_execute,
    db_rows,
)
from tests.gateway.money_support import (
    MOMO_PHONE,
    MPESA_PHONE,
    events_of,
    new_api_key,
    post_payout,
    scenario,
    set_faults,
    sim_callbacks,
    sim_requests,
    wait_for,
    wait_status,
)
from tests.gateway.test_callbacks import anomaly_kinds
from tests.gateway.test_guards import flag_off

B2C = "/mpesa/b2c/v3/paymentrequest"
STATUS = "/mpesa/transactionstatus/v1/query"
TRANSFER = "/disbursement/v1_0/transfer"


def b2c_sent(sim_url: str, ocid: str) -> int:
    return sum(
        1 for r in sim_requests(sim_url, B2C) if r["body"].get("OriginatorConversationID") == ocid
    )


def transfers_sent(sim_url: str, reference: str) -> int:
    return sum(
        1
        for r in sim_requests(sim_url, TRANSFER)
        if r["headers"].get("x-reference-id") == reference
    )


def payout(merchant: Merchant, **body: Any) -> dict[str, Any]:
    response = post_payout(merchant, **body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def final(merchant: Merchant, payout_id: str, timeout: float = 20.0) -> dict[str, Any]:
    return wait_status(merchant, f"/v1/payouts/{payout_id}", timeout=timeout)


# ----- M-Pesa B2C ------------------------------------------------------------------------------
def test_mpesa_payout_succeeds_once_per_idempotency_key(merchant: Merchant, sim_url: str) -> None:
    key = str(uuid.uuid4())
    body: dict[str, Any] = {
        "amount": "500",
        "currency": "KES",
        "phone": MPESA_PHONE,
        "reference": "cb-1",
    }
    first = post_payout(merchant, key=key, **body)
    assert first.status_code == 201, first.text
    created = first.json()
    assert created["status"] in {"pending", "succeeded"}  # the result may beat the answer
    assert created["id"].startswith("po_")
    replay = post_payout(merchant, key=key, **body)
    assert replay.json()["id"] == created["id"]
    assert replay.headers.get("Idempotent-Replayed") == "true"

    done = final(merchant, created["id"])
    assert done["status"] == "succeeded"
    assert done["receipt"] and done["recipient_name"]
    assert done["resolved_by"] == "callback"
    assert events_of(merchant, created["id"]) == ["payout.created", "payout.succeeded"]

    [sent] = [
        r["body"]
        for r in sim_requests(sim_url, B2C)
        if r["body"]["OriginatorConversationID"] == created["provider_request_id"]
    ]
    creds = httpx.get(f"{sim_url}/_sim/credentials").json()["mpesa"]["b2c"]
    assert sent["PartyA"] == creds["shortcode"]
    assert sent["PartyB"] == "254708374149"
    assert sent["Amount"] == "500" and sent["CommandID"] == "BusinessPayment"
    assert creds["initiator_password"] not in sent["SecurityCredential"]
    assert "/b2c/" in sent["ResultURL"] and "/b2c-timeout/" in sent["QueueTimeOutURL"]


@pytest.mark.parametrize(
    ("amount", "code"),
    [("9", "amount_too_small"), ("250001", "amount_too_large"), ("100.50", "amount_not_whole")],
)
def test_mpesa_b2c_amount_rules(merchant: Merchant, sim_url: str, amount: str, code: str) -> None:
    response = post_payout(merchant, amount=amount, currency="KES", phone=MPESA_PHONE)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert sim_requests(sim_url, B2C) == []


def test_unregistered_customer_fails(merchant: Merchant) -> None:
    created = payout(merchant, amount="100", currency="KES", phone="0712340040")
    done = final(merchant, created["id"])
    assert done["status"] == "failed"
    assert (done["failure_code"], done["provider_code"]) == ("payer_not_found", "2040")


def test_insufficient_b2c_float_fails(merchant: Merchant, sim_url: str) -> None:
    # The simulator's B2C utility account holds KES 1,000,000: four maximum payouts drain it.
    drains = [
        payout(merchant, amount="250000", currency="KES", phone=MPESA_PHONE) for _ in range(4)
    ]
    for drained in drains:
        assert final(merchant, drained["id"])["status"] == "succeeded"
    accounts = httpx.get(f"{sim_url}/_sim/accounts").json()
    assert Decimal(accounts["mpesa:600997:utility"]) == 0
    done = final(merchant, payout(merchant, amount="10", currency="KES", phone=MPESA_PHONE)["id"])
    assert (done["status"], done["failure_code"], done["provider_code"]) == (
        "failed",
        "insufficient_funds",
        "1",
    )


def test_lost_result_callback_is_recovered_by_status_query(
    merchant: Merchant, sim_url: str
) -> None:
    set_faults(sim_url, callback_drop_pct=100)
    created = payout(merchant, amount="700", currency="KES", phone=MPESA_PHONE)
    wait_for(lambda: any(c["dropped"] for c in sim_callbacks(sim_url, "b2c_result")), 10, "drop")
    set_faults(sim_url, callback_drop_pct=0)
    done = final(merchant, created["id"], timeout=30)
    assert (done["status"], done["resolved_by"]) == ("succeeded", "query")
    assert done["receipt"]
    asked = [r["body"] for r in sim_requests(sim_url, STATUS)]
    assert any(a["OriginalConversationID"] == created["provider_request_id"] for a in asked)
    assert b2c_sent(sim_url, created["provider_request_id"]) == 1
    assert events_of(merchant, created["id"]) == ["payout.created", "payout.succeeded"]


def test_duplicated_result_callback_changes_the_payout_once(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    set_faults(sim_url, callback_duplicate_pct=100)
    created = payout(merchant, amount="300", currency="KES", phone=MPESA_PHONE)
    assert final(merchant, created["id"])["status"] == "succeeded"
    # Each copy is stored, then applied: wait for both to be applied, not only stored.
    wait_for(
        lambda: [r["outcome"] is not None for r in _inbound(database_url, created["id"])]
        == [True, True],
        10,
        "both copies",
    )
    outcomes = sorted(r["outcome"] for r in _inbound(database_url, created["id"]))
    assert outcomes == ["applied", "noop"]
    assert events_of(merchant, created["id"]) == ["payout.created", "payout.succeeded"]


def test_queue_timeout_goes_unknown_then_resolves_by_query(
    merchant: Merchant, sim_url: str
) -> None:
    # The simulator's QueueTimeOutURL notice: nothing executed, the status says Expired.
    scenario(sim_url, "mpesa", "queue_timeout", phone="254708374149")
    created = payout(merchant, amount="150", currency="KES", phone=MPESA_PHONE)
    wait_status(merchant, f"/v1/payouts/{created['id']}", {"unknown", "failed"})
    done = final(merchant, created["id"], timeout=30)
    assert (done["status"], done["failure_code"], done["resolved_by"]) == (
        "failed",
        "expired",
        "query",
    )
    assert events_of(merchant, created["id"]) == [
        "payout.created",
        "payout.failed",
        "payout.unknown",
    ]
    assert b2c_sent(sim_url, created["provider_request_id"]) == 1


def test_a_duplicate_detected_result_is_checked_not_failed(
    merchant: Merchant, sim_url: str
) -> None:
    """ResultCode 15 answers a repeat M-Pesa saw, not the payout: the money may have moved, so
    the payout is checked (and found paid) instead of failed, which could make it paid twice."""
    scenario(sim_url, "mpesa", "duplicate_detected", phone="254708374149")
    created = payout(merchant, amount="160", currency="KES", phone=MPESA_PHONE)
    wait_for(
        lambda: any(
            c["body"]["Result"]["ResultCode"] == 15 for c in sim_callbacks(sim_url, "b2c_result")
        ),
        10,
        "the duplicate-detected result",
    )
    done = final(merchant, created["id"], timeout=30)
    assert (done["status"], done["resolved_by"]) == ("succeeded", "query")
    assert done["receipt"]
    assert events_of(merchant, created["id"]) == [
        "payout.created",
        "payout.succeeded",
        "payout.unknown",
    ]
    assert b2c_sent(sim_url, created["provider_request_id"]) == 1


def test_duplicate_originator_conversation_id_is_never_a_second_payout(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    """A re-send whose OriginatorConversationID Daraja already has is answered "Duplicate":
    read as accepted-already, queried, and the payee is paid once."""
    ocid = str(uuid.uuid4())
    first = asyncio.run(_direct_b2c(sim_url, ocid, amount=250))
    assert first.outcome is SendOutcome.ACCEPTED
    again = asyncio.run(_direct_b2c(sim_url, ocid, amount=250))
    assert (again.outcome, again.error_code) == (SendOutcome.ACCEPTED, "500.002.1001")
    # A payout row left as a dead process would: its status query said "no such transaction"
    # (wrongly, say), so the worker re-sends it once with the same id.
    row = _payout_row(merchant, ocid, send_state="not_found", amount=Decimal(250))
    _insert(database_url, row)
    done = final(merchant, row.id, timeout=30)
    assert done["status"] == "succeeded" and done["resolved_by"] == "query"
    assert b2c_sent(sim_url, ocid) == 3  # two direct, one re-send: all one transaction
    records = httpx.get(f"{sim_url}/_sim/transactions", params={"provider": "mpesa"}).json()
    paid = [t for t in records["mpesa"] if t.get("originator_conversation_id") == ocid]
    assert len(paid) == 1


# ----- MoMo transfers --------------------------------------------------------------------------
def test_momo_transfer_succeeds(merchant_factory: Callable[..., Merchant], sim_url: str) -> None:
    merchant = merchant_factory(momo_currency="RWF")
    created = payout(merchant, amount="5000", currency="RWF", phone=MOMO_PHONE)
    done = final(merchant, created["id"])
    assert (done["status"], done["resolved_by"]) == ("succeeded", "callback")
    assert done["receipt"]
    [sent] = [
        r
        for r in sim_requests(sim_url, TRANSFER)
        if r["headers"].get("x-reference-id") == created["provider_request_id"]
    ]
    assert sent["body"]["payee"]["partyId"] == "250788123456"
    assert sent["body"]["externalId"] == created["id"]
    assert sent["headers"]["x-callback-url"].endswith(f"/momo-transfer/{created['id']}")


def test_momo_not_enough_funds(merchant_factory: Callable[..., Merchant], sim_url: str) -> None:
    merchant = merchant_factory(momo_currency="RWF")
    scenario(sim_url, "momo", "not_enough_funds", phone="250788123456")
    done = final(merchant, payout(merchant, amount="5000", currency="RWF", phone=MOMO_PHONE)["id"])
    assert (done["status"], done["failure_code"]) == ("failed", "insufficient_funds")


def test_lost_momo_callback_recovered_by_get(
    merchant_factory: Callable[..., Merchant], sim_url: str
) -> None:
    merchant = merchant_factory(momo_currency="RWF")
    set_faults(sim_url, callback_drop_pct=100)
    created = payout(merchant, amount="5000", currency="RWF", phone=MOMO_PHONE)
    done = final(merchant, created["id"], timeout=30)
    assert (done["status"], done["resolved_by"]) == ("succeeded", "query")
    assert transfers_sent(sim_url, created["provider_request_id"]) == 1


def test_a_transfer_callback_mtn_cannot_confirm_now_is_marked_tried_and_applied_later(
    merchant_factory: Callable[..., Merchant], sim: Simulator, sim_url: str, database_url: str
) -> None:
    """Kept for the sweep behind callbacks never tried (a broken key cannot starve the rest),
    then applied once MTN answers again."""
    merchant = merchant_factory(momo_currency="RWF")
    sim.settings.prompt_seconds = 1.0  # the result comes back after the faults are on
    created = payout(merchant, amount="5000", currency="RWF", phone=MOMO_PHONE)
    set_faults(sim_url, error_pct=100)

    def rows() -> list[dict[str, Any]]:
        return db_rows(database_url, "SELECT outcome, processed_at FROM inbound_callbacks "
                       "WHERE payment_id = :id", id=created["id"])  # fmt: skip

    wait_for(lambda: rows() == [{"outcome": "unconfirmed", "processed_at": None}], 10, "tried")
    set_faults(sim_url, error_pct=0)
    assert final(merchant, created["id"], timeout=30)["status"] == "succeeded"
    wait_for(lambda: rows()[0]["processed_at"] is not None, 20, "the sweep")


# ----- approval --------------------------------------------------------------------------------
def test_approval_needs_another_key_and_nothing_is_sent_before(
    merchant_factory: Callable[..., Merchant], sim_url: str
) -> None:
    merchant = merchant_factory(settings={"payout_approval_threshold": {"KES": "50000"}})
    small = payout(merchant, amount="49999", currency="KES", phone=MPESA_PHONE)
    assert small["status"] in {"pending", "succeeded"} and not small["approval_required"]
    created = payout(merchant, amount="50000", currency="KES", phone=MPESA_PHONE)
    assert created["status"] == "awaiting_approval" and created["approval_required"]
    ocid = created["provider_request_id"]
    with merchant.client() as same:
        refused = same.post(f"/v1/payouts/{created['id']}/approve")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "approval_requires_other_key"
    time.sleep(0.5)
    assert b2c_sent(sim_url, ocid) == 0
    assert wait_status(merchant, f"/v1/payouts/{created['id']}", {"awaiting_approval"})

    with merchant.gateway.client(new_api_key(merchant)) as other:
        approved = other.post(f"/v1/payouts/{created['id']}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["approved_by"] not in (None, created["requested_by"])
        again = other.post(f"/v1/payouts/{created['id']}/approve")
        assert again.status_code == 200  # approving twice is a no-op, never a second send
    assert final(merchant, created["id"])["status"] == "succeeded"
    assert b2c_sent(sim_url, ocid) == 1
    assert events_of(merchant, created["id"]) == [
        "payout.awaiting_approval",
        "payout.created",
        "payout.pending",
        "payout.succeeded",
    ]


def test_cancel_while_awaiting_and_admin_approval(
    merchant_factory: Callable[..., Merchant], sim_url: str, gateway: Gateway
) -> None:
    merchant = merchant_factory(settings={"payout_approval_threshold": {"KES": "1000"}})
    doomed = payout(merchant, amount="2000", currency="KES", phone=MPESA_PHONE)
    with merchant.client() as c:
        cancelled = c.post(f"/v1/payouts/{doomed['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    with merchant.gateway.client(new_api_key(merchant)) as other:
        late = other.post(f"/v1/payouts/{doomed['id']}/approve")
    assert late.status_code == 409
    assert b2c_sent(sim_url, doomed["provider_request_id"]) == 0
    assert events_of(merchant, doomed["id"]) == [
        "payout.awaiting_approval",
        "payout.cancelled",
        "payout.created",
    ]

    waiting = payout(merchant, amount="3000", currency="KES", phone=MPESA_PHONE)
    with gateway.admin() as admin:
        approved = admin.post(f"/admin/v1/payouts/{waiting['id']}/approve")
    assert approved.status_code == 200 and approved.json()["approved_by"] == "admin"
    assert final(merchant, waiting["id"])["status"] == "succeeded"
    with merchant.client() as c:
        assert c.post(f"/v1/payouts/{waiting['id']}/cancel").status_code == 409


def test_a_retry_with_a_new_key_never_pays_out_twice(
    merchant_factory: Callable[..., Merchant], sim_url: str, database_url: str
) -> None:
    merchant = merchant_factory(settings={"duplicate_window_s": 600})
    body = {"amount": "150", "currency": "KES", "phone": MPESA_PHONE, "reference": "po-dup-1"}
    key = str(uuid.uuid4())
    first = post_payout(merchant, key=key, **body)
    assert first.status_code == 201, first.text
    again = post_payout(merchant, **body)  # a new key for the same payout
    assert again.status_code == 409, again.text
    error = again.json()["error"]
    assert (error["code"], error["param"]) == ("duplicate_payout", "reference")
    assert error["payout_id"] == first.json()["id"]
    replay = post_payout(merchant, key=key, **body)  # the same key replays
    assert replay.status_code == 201 and replay.json()["id"] == first.json()["id"]
    assert final(merchant, first.json()["id"])["status"] == "succeeded"
    assert b2c_sent(sim_url, first.json()["provider_request_id"]) == 1

    # Eight at once, each with its own key: one payout.
    racing = {**body, "reference": "po-dup-2"}

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=merchant.gateway.url,
            headers={"Authorization": f"Bearer {merchant.api_key}"},
            timeout=60,
        ) as client:
            return await asyncio.gather(*(
                client.post("/v1/payouts", json={**racing, "reason": "Cashback"},
                            headers={"Idempotency-Key": str(uuid.uuid4())})
                for _ in range(8)
            ))  # fmt: skip

    answers = asyncio.run(fire())
    assert sorted(a.status_code for a in answers) == [201] + [409] * 7
    rows = db_rows(database_url, "SELECT id FROM payouts WHERE merchant_id = :m AND reference = :r",
                   m=merchant.id, r="po-dup-2")  # fmt: skip
    assert len(rows) == 1
    # Another reference is another payout.
    assert post_payout(merchant, **{**body, "reference": "po-dup-3"}).status_code == 201


def test_a_payout_approved_hours_after_its_request_is_not_unknown_at_its_first_check(
    merchant_factory: Callable[..., Merchant], sim_url: str, database_url: str
) -> None:
    """Approvals take hours. The status checks count from the approval, when the payout is
    sent, not from the request: a slow but normal result arrives, and the merchant never
    hears payout.unknown ("the provider's answer was lost") on the way."""
    merchant = merchant_factory(settings={"payout_approval_threshold": {"KES": "1000"}})
    waiting = payout(merchant, amount="2000", currency="KES", phone=MPESA_PHONE)
    assert waiting["status"] == "awaiting_approval"
    db_execute(database_url, "UPDATE payouts SET created_at = :t WHERE id = :id",
               t=utcnow() - timedelta(hours=3), id=waiting["id"])  # fmt: skip
    set_faults(sim_url, callback_delay_min_s=8, callback_delay_max_s=8)  # after the 1st check
    with merchant.gateway.client(new_api_key(merchant)) as other:
        approved = other.post(f"/v1/payouts/{waiting['id']}/approve")
    assert approved.status_code == 200, approved.text
    assert final(merchant, waiting["id"], timeout=40)["status"] == "succeeded"
    assert "payout.unknown" not in events_of(merchant, waiting["id"])


def test_approval_keeps_waiting_while_its_account_is_disabled_or_switched_off(
    merchant_factory: Callable[..., Merchant], sim_url: str, gateway: Gateway
) -> None:
    merchant = merchant_factory(settings={"payout_approval_threshold": {"KES": "1000"}})
    waiting = payout(merchant, amount="2000", currency="KES", phone=MPESA_PHONE)
    account = merchant.accounts["mpesa"]["id"]
    approve = f"/admin/v1/payouts/{waiting['id']}/approve"
    with gateway.admin() as admin:
        toggle = f"/admin/v1/merchants/{merchant.id}/accounts/{account}"
        assert admin.post(f"{toggle}/disable").status_code == 200
        refused = admin.post(approve)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "account_disabled"
        assert admin.post(f"{toggle}/enable").status_code == 200
        with flag_off(gateway, f"account:{account}"):
            paused = admin.post(approve)
            assert paused.status_code == 503, paused.text
            assert paused.json()["error"]["code"] == "provider_disabled"
        assert wait_status(merchant, f"/v1/payouts/{waiting['id']}", {"awaiting_approval"})
        assert b2c_sent(sim_url, waiting["provider_request_id"]) == 0
        assert admin.post(approve).status_code == 200
    assert final(merchant, waiting["id"])["status"] == "succeeded"
    assert b2c_sent(sim_url, waiting["provider_request_id"]) == 1


# ----- reading ---------------------------------------------------------------------------------
def test_list_and_tenant_isolation(
    merchant: Merchant, merchant_factory: Callable[..., Merchant]
) -> None:
    ids = [payout(merchant, amount="20", currency="KES", phone=MPESA_PHONE)["id"] for _ in range(3)]
    with merchant.client() as c:
        first = c.get("/v1/payouts", params={"limit": 2}).json()
        second = c.get("/v1/payouts", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    listed = [p["id"] for p in first["data"] + second["data"]]
    assert listed == list(reversed(ids)) and first["has_more"] and not second["has_more"]
    stranger = merchant_factory()
    with stranger.client() as c:
        assert c.get(f"/v1/payouts/{ids[0]}").status_code == 404
        assert c.get("/v1/payouts").json()["data"] == []
        assert c.post(f"/v1/payouts/{ids[0]}/cancel").status_code == 404


def test_missing_idempotency_key_and_bad_input_change_nothing(
    merchant: Merchant, sim_url: str
) -> None:
    with merchant.client() as c:
        body = {"amount": "100", "currency": "KES", "phone": MPESA_PHONE, "reference": "x"}
        response = c.post("/v1/payouts", json=body)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "idempotency_key_required"
        bad = c.post(
            "/v1/payouts",
            json={**body, "phone": "0700"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "phone"
        assert c.get("/v1/payouts").json()["data"] == []
    assert sim_requests(sim_url, B2C) == []


# ----- a payout is never sent twice, whatever fails in between ----------------------------------
class Process:
    """A gateway process (uvicorn running lipwa.api.app) on a fixed port, killed with SIGKILL."""

    def __init__(self, popen: subprocess.Popen[bytes], url: str) -> None:
        self.popen = popen
        self.url = url

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)


@pytest.fixture
def own_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the same kind as the suite's, for the crash tests alone: no other worker
    (the session gateway runs one) may touch their payouts."""
    from sqlalchemy import text

    from lipwa.store.migrate import upgrade

    if not database_url.startswith("postgresql"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
        upgrade(url)
        yield url
        return
    name = f"lipwa_crash_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    url = database_url.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    try:
        yield url
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@contextmanager
def gateway_process(
    gateway: Gateway, database_url: str, port: int, log: Path, **env: str
) -> Iterator[Process]:
    settings = gateway.settings
    assert settings.encryption_keys is not None
    environment = {
        **os.environ,
        "LIPWA_DATABASE_URL": database_url,
        "LIPWA_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LIPWA_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIPWA_ENCRYPTION_KEYS": settings.encryption_keys.get_secret_value(),
        "LIPWA_RATE_LIMIT_API_KEY": "1000/second",
        "LIPWA_RATE_LIMIT_PROMPTS": "1000/minute",
        "LIPWA_PROVIDER_READ_TIMEOUT_S": "30",
        "LIPWA_FIRST_CHECK_AFTER_S": "1",
        "LIPWA_STALE_SEND_AFTER_S": "2",
        "LIPWA_CHECK_BACKOFF_INITIAL_S": "0.5",
        "LIPWA_CHECK_BACKOFF_MAX_S": "1",
        **env,
    }
    command = [
        sys.executable, "-m", "uvicorn", "lipwa.api.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with log.open("ab") as out:
        popen = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT)
    process = Process(popen, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            assert popen.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{process.url}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway process did not start"
            time.sleep(0.1)
        yield process
    finally:
        if popen.poll() is None:  # done with it: no graceful shutdown needed
            popen.kill()
            popen.wait(timeout=10)


@pytest.mark.parametrize("provider", ["mpesa", "momo"])
@pytest.mark.parametrize("dies", ["before_send", "awaiting_answer"])
def test_never_sent_twice_when_the_process_dies(
    provider: str,
    dies: str,
    gateway: Gateway,
    sim: object,
    sim_url: str,
    own_database: str,
    tmp_path: Path,
) -> None:
    """SIGKILL the gateway process between write-ahead and send (it hangs fetching the OAuth
    token: the simulator's latency fault) or after the provider acted but before its answer
    arrived (answer_delay_ms). A restarted process's recovery settles the payout, and the
    provider has seen exactly one payout request."""
    database_url = own_database
    reference = f"crash-{uuid.uuid4().hex[:8]}"
    body = (
        {"amount": "1000", "currency": "KES", "phone": MPESA_PHONE}
        if provider == "mpesa"
        else {"amount": "5000", "currency": "RWF", "phone": MOMO_PHONE}
    )
    port = free_port()
    log = tmp_path / "gateway.log"
    with gateway_process(gateway, database_url, port, log, LIPWA_RUN_WORKER="false") as first:
        merchant = create_merchant(
            Gateway(first.url, gateway.settings, log), sim_url, momo_currency="RWF"
        )
        if dies == "before_send":
            set_faults(sim_url, latency_ms=30_000)  # every provider answer, the token first
        else:
            # Every answer (the token's too) leaves 8 s late; the provider acts at once, and its
            # result callback, addressed to the dying process, is lost.
            set_faults(sim_url, answer_delay_ms=8_000, callback_drop_pct=100)
        client = merchant.gateway.client(merchant.api_key)
        client.base_url = httpx.URL(first.url)
        thread = threading.Thread(
            target=_swallow,
            args=(lambda: post_payout(merchant, client, reference=reference, **body),),
        )
        thread.start()
        wait_for(lambda: bool(_payouts_by_reference(database_url, reference)), 15, "write-ahead")
        row = _payouts_by_reference(database_url, reference)[0]
        request_id = row["provider_request_id"]
        if dies == "before_send":
            token_path = "/oauth/v1/generate" if provider == "mpesa" else "/disbursement/token"
            method = "GET" if provider == "mpesa" else "POST"
            wait_for(lambda: bool(sim_requests(sim_url, token_path, method)), 10, "token fetch")
        else:
            wait_for(lambda: _sent(provider, sim_url, request_id) == 1, 25, "the provider acts")
        first.kill()
    thread.join(timeout=10)
    set_faults(sim_url, latency_ms=0, answer_delay_ms=0, callback_drop_pct=0)
    killed = _payouts_by_reference(database_url, reference)[0]
    assert (killed["status"], killed["send_state"]) == ("pending", "not_sent")
    assert _sent(provider, sim_url, request_id) == (0 if dies == "before_send" else 1)

    # The restarted process (same public URL), running the payout recovery.
    with gateway_process(
        gateway, database_url, port, log, LIPWA_WORKER_JOBS="payout_checks,money_callback_sweep"
    ):
        wait_for(
            lambda: _payouts_by_reference(database_url, reference)[0]["status"] == "succeeded",
            45,
            "recovery",
        )
        assert _sent(provider, sim_url, request_id) == 1
        if provider == "mpesa":  # asked by its own id before anything else was done
            asked = [r["body"].get("OriginalConversationID") for r in sim_requests(sim_url, STATUS)]
            assert request_id in asked
        settled = _payouts_by_reference(database_url, reference)[0]
        assert settled["receipt"] and settled["resolved_by"] in {"query", "callback"}
        assert events_of(merchant, settled["id"]).count("payout.succeeded") == 1


def test_a_retry_after_the_process_died_learns_the_payout(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    """A process that wrote the payout ahead (key claimed, payout stored) and died before it
    stored its answer — a deploy restart mid-send — leaves a key that never gets one. The
    merchant's retry with the same Idempotency-Key and body is shown that payout as it stands,
    as for payments, not 409 idempotency_in_progress for ever; nothing is sent again."""
    key = str(uuid.uuid4())
    body = {
        "amount": "400",
        "currency": "KES",
        "phone": MPESA_PHONE,
        "reference": f"crash-{uuid.uuid4().hex[:8]}",
        "reason": "Cashback",
    }
    row = _payout_row(merchant, str(uuid.uuid4()), send_state="ambiguous", amount=Decimal(400))
    long_ago = utcnow() - timedelta(hours=1)
    row.status, row.reference, row.reason = "unknown", body["reference"], body["reason"]
    row.next_check_at, row.created_at, row.updated_at = None, long_ago, long_ago
    claim = IdempotencyKey(
        merchant_id=merchant.id,
        key=f"test:{key}",
        method_path="POST /v1/payouts",
        request_hash=request_hash(PayoutIn(**body).model_dump(mode="json")),
        state="in_progress",
        resource_id=row.id,
        created_at=long_ago,
    )
    _insert(database_url, claim, row)
    retry = post_payout(merchant, key=key, **body)
    assert retry.status_code == 201, retry.text
    assert (retry.json()["id"], retry.json()["status"]) == (row.id, "unknown")
    assert b2c_sent(sim_url, row.provider_request_id) == 0


# ----- helpers ----------------------------------------------------------------------------------
def _swallow(call: Callable[[], object]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the process died under the request
        call()


def _sent(provider: str, sim_url: str, request_id: str) -> int:
    return (
        b2c_sent(sim_url, request_id)
        if provider == "mpesa"
        else transfers_sent(sim_url, request_id)
    )


def _payouts_by_reference(database_url: str, reference: str) -> list[dict[str, Any]]:
    return db_rows(database_url, "SELECT * FROM payouts WHERE reference = :r", r=reference)


def _inbound(database_url: str, payout_id: str) -> list[dict[str, Any]]:
    return db_rows(
        database_url,
        "SELECT outcome FROM inbound_callbacks WHERE payment_id = :id AND kind = 'b2c'",
        id=payout_id,
    )


def _payout_row(merchant: Merchant, ocid: str, *, send_state: str, amount: Decimal) -> Payout:
    now = utcnow()
    return Payout(
        id=f"po_test{uuid.uuid4().hex[:16]}",
        merchant_id=merchant.id,
        account_id=merchant.accounts["mpesa"]["id"],
        mode="test",
        provider="mpesa",
        status="pending",
        amount=amount,
        currency="KES",
        phone="254708374149",
        network="safaricom",
        reason="",
        reference="dup-ocid",
        meta={},
        provider_request_id=ocid,
        send_state=send_state,
        requested_by="test",
        approval_required=False,
        check_attempts=0,
        next_check_at=now,
        created_at=now,
        updated_at=now,
    )


def _insert(database_url: str, *rows: Any) -> None:
    async def run() -> None:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                session.add_all(rows)
        finally:
            await engine.dispose()

    asyncio.run(run())


async def _direct_b2c(sim_url: str, ocid: str, amount: int) -> Any:
    async with httpx.AsyncClient() as fetch:
        creds = (await fetch.get(f"{sim_url}/_sim/credentials")).json()["mpesa"]
    async with httpx.AsyncClient() as http:
        client = MpesaClient(
            account_key="direct",
            base_url=sim_url,
            credentials=MpesaCredentials(
                consumer_key=creds["consumer_key"],
                consumer_secret=creds["consumer_secret"],
                shortcode=creds["paybill"]["shortcode"],
                kind="paybill",
                passkey=creds["paybill"]["passkey"],
                initiator_name=creds["b2c"]["initiator_name"],
                initiator_password=creds["b2c"]["initiator_password"],
                certificate_pem=creds["b2c"]["certificate_pem"],
                b2c_shortcode=creds["b2c"]["shortcode"],
            ),
            http=http,
            tokens=TokenCache(),
        )
        return await client.b2c_payment(
            originator_conversation_id=ocid,
            amount=amount,
            phone="254708374149",
            remarks="direct",
            occasion="",
            result_url="http://127.0.0.1:9/nowhere",
            queue_timeout_url="http://127.0.0.1:9/nowhere",
        )


def test_recovery_sends_nothing_while_the_kill_switch_is_thrown(
    merchant: Merchant, gateway: Gateway, sim_url: str, database_url: str
) -> None:
    """A payout Daraja never got (its process died before the send) is sent by recovery. A
    kill switch thrown meanwhile (fraud on the merchant, a provider incident) holds that send
    as it holds an approval's: nothing goes out while it is off, the payout stays open, and it
    is sent once the switch is back on."""
    row = _payout_row(merchant, str(uuid.uuid4()), send_state="not_found", amount=Decimal(250))
    with flag_off(gateway, f"merchant:{merchant.id}"):
        _insert(database_url, row)
        time.sleep(6)  # several recovery rounds (the worker polls every second)
        assert b2c_sent(sim_url, row.provider_request_id) == 0
        [held] = db_rows(database_url, "SELECT * FROM payouts WHERE id = :id", id=row.id)
        assert held["status"] in {"pending", "unknown"} and held["next_check_at"] is not None
    wait_for(lambda: b2c_sent(sim_url, row.provider_request_id) == 1, 15, "the send")
    assert final(merchant, row.id)["status"] == "succeeded"


def test_a_resend_refused_by_throttling_keeps_the_payout_open_and_sends_it_later(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    """Daraja said it has no such payout, so recovery re-sends it, and the re-send meets a
    spike arrest. Nothing left, and the first send may still land: the payout stays open,
    never failed (the merchant would pay again), and is sent once Daraja answers."""
    warm = payout(merchant, amount="10", currency="KES", phone=MPESA_PHONE)  # a token in hand
    assert final(merchant, warm["id"])["status"] == "succeeded"
    row = _payout_row(merchant, str(uuid.uuid4()), send_state="not_found", amount=Decimal(250))
    set_faults(sim_url, error_pct=100)
    _insert(database_url, row)

    def refused_twice_and_held() -> bool:
        # Each re-send claims the row ("resent") before it goes out and hands it back once
        # refused: read it when the refusal is recorded, not while the next one is in flight.
        [now] = db_rows(database_url, "SELECT * FROM payouts WHERE id = :id", id=row.id)
        return b2c_sent(sim_url, row.provider_request_id) >= 2 and now["send_state"] == "not_found"

    wait_for(refused_twice_and_held, 15, "refused re-sends, the payout held for the next")
    [held] = db_rows(database_url, "SELECT * FROM payouts WHERE id = :id", id=row.id)
    assert held["status"] in {"pending", "unknown"} and held["next_check_at"] is not None
    set_faults(sim_url, error_pct=0)
    done = final(merchant, row.id, timeout=60)
    assert done["status"] == "succeeded"
    assert "payout.failed" not in events_of(merchant, row.id)
    records = httpx.get(f"{sim_url}/_sim/transactions", params={"provider": "mpesa"}).json()
    paid = [
        t
        for t in records["mpesa"]
        if t.get("originator_conversation_id") == row.provider_request_id
    ]
    assert len(paid) == 1


def test_a_payout_parked_after_a_day_is_settled_when_the_merchant_asks(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    """Automatic checks end 24 h after the send (unknown, nothing scheduled): say the
    initiator's password had expired all day. Once it is fixed, the merchant's refresh asks
    Daraja again and the payout settles; nothing is sent twice."""
    ocid = str(uuid.uuid4())
    assert asyncio.run(_direct_b2c(sim_url, ocid, amount=250)).outcome is SendOutcome.ACCEPTED
    row = _payout_row(merchant, ocid, send_state="sent", amount=Decimal(250))
    row.status, row.next_check_at = "unknown", None
    row.created_at = row.updated_at = utcnow() - timedelta(hours=25)
    _insert(database_url, row)
    time.sleep(1.5)  # the worker's rounds leave a parked payout alone
    with merchant.client() as c:
        assert c.get(f"/v1/payouts/{row.id}").json()["status"] == "unknown"
        asked = c.post(f"/v1/payouts/{row.id}/refresh")
    assert asked.status_code == 200 and asked.json()["id"] == row.id
    done = final(merchant, row.id)
    assert (done["status"], done["resolved_by"]) == ("succeeded", "query")
    assert b2c_sent(sim_url, ocid) == 1  # the direct send only
    with merchant.client() as c:  # a final payout is returned as it is
        again = c.post(f"/v1/payouts/{row.id}/refresh")
    assert again.json()["status"] == "succeeded"


def test_a_forged_momo_transfer_result_is_not_believed(
    merchant_factory: Callable[..., Merchant], sim_url: str, database_url: str
) -> None:
    """MoMo results carry no signature: Lipwa asks MTN, which still says PENDING."""
    merchant = merchant_factory(momo_currency="RWF")
    scenario(sim_url, "momo", "ongoing", phone="250788123456")
    created = payout(merchant, amount="5000", currency="RWF", phone=MOMO_PHONE)
    url = f"{merchant.accounts['momo']['callback_url']}/momo-transfer/{created['id']}"
    forged = httpx.put(url, json={
        "financialTransactionId": "FAKE-1", "externalId": created["id"], "amount": "5000",
        "currency": "RWF", "payee": {"partyIdType": "MSISDN", "partyId": "250788123456"},
        "status": "FAILED", "reason": "NOT_ENOUGH_FUNDS"})  # fmt: skip
    assert forged.status_code == 200
    assert anomaly_kinds(database_url, created["id"]) == ["unconfirmed_callback"]
    with merchant.client() as c:
        assert c.get(f"/v1/payouts/{created['id']}").json()["status"] == "pending"
    gets = sim_requests(sim_url, f"{TRANSFER}/{created['provider_request_id']}", method="GET")
    assert len(gets) >= 1


@pytest.mark.parametrize(
    ("thresholds", "expected"),
    [
        (None, None),  # no approval step
        ({"RWF": "1000"}, None),  # none for this currency
        ({"KES": "50000"}, Decimal(50000)),
        ({"KES": 1000}, Decimal(1000)),
        # unreadable: every payout waits, never none (a typo must not switch approval off)
        ({"KES": "50,000"}, Decimal(0)),
        ({"KES": "NaN"}, Decimal(0)),
        ({"KES": "-5"}, Decimal(0)),
        ("50000", Decimal(0)),
        ({"kes": "50000"}, Decimal(0)),  # stored before keys were checked
        ({" KES": "50000"}, Decimal(0)),
    ],
)
def test_an_unreadable_approval_threshold_holds_every_payout(
    thresholds: object, expected: Decimal | None
) -> None:
    settings = {} if thresholds is None else {"payout_approval_threshold": thresholds}
    assert approval_threshold(settings, "KES") == expected
