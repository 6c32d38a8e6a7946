"""Refunds end to end: M-Pesa reversals (whole payments) and MoMo refunds (whole or part),
never more than was paid, even when refunds race each other."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import utcnow
from lipwa.providers.base import SendOutcome
from lipwa.providers.mpesa.client import MpesaClient
from lipwa.providers.mpesa.credentials import MpesaCredentials
from lipwa.providers.tokens import TokenCache
from lipwa.services.idempotency import request_hash
from lipwa.services.refunds import RefundIn
from lipwa.store.tables import IdempotencyKey, Refund
from tests.gateway.conftest import Gateway, Merchant, db_rows
from tests.gateway.money_support import (
    MOMO_PHONE,
    MPESA_PHONE,
    events_of,
    paid_payment,
    scenario,
    set_faults,
    sim_callbacks,
    sim_requests,
    wait_for,
    wait_status,
)
from tests.gateway.test_callbacks import anomaly_kinds
from tests.gateway.test_recovery import insert_rows
from tests.ops_support import run_db

REVERSAL = "/mpesa/reversal/v1/request"
MOMO_REFUND = "/disbursement/v1_0/refund"


def refund(
    merchant: Merchant, payment_id: str, key: str | None = None, **body: Any
) -> httpx.Response:
    with merchant.client() as c:
        return c.post(
            f"/v1/payments/{payment_id}/refunds",
            json=body,
            headers={"Idempotency-Key": key or str(uuid.uuid4())},
        )


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def final(merchant: Merchant, refund_id: str, timeout: float = 20.0) -> dict[str, Any]:
    return wait_status(merchant, f"/v1/refunds/{refund_id}", timeout=timeout)


@pytest.fixture
def momo_merchant(merchant_factory: Callable[..., Merchant]) -> Merchant:
    return merchant_factory(momo_currency="RWF")


# ----- M-Pesa reversal -------------------------------------------------------------------------
def test_mpesa_reversal_refunds_the_whole_payment(merchant: Merchant, sim_url: str) -> None:
    payment = paid_payment(merchant, "KES", MPESA_PHONE, "100")
    key = str(uuid.uuid4())
    first = created(refund(merchant, payment["id"], key=key, reason="Order cancelled"))
    assert (first["status"], first["amount"], first["payment_id"]) == (
        "pending",
        "100.00",
        payment["id"],
    )
    assert (
        refund(merchant, payment["id"], key=key, reason="Order cancelled").json()["id"]
        == (first["id"])
    )
    done = final(merchant, first["id"])
    assert (done["status"], done["resolved_by"]) == ("succeeded", "callback")
    assert done["receipt"] and done["receipt"] != payment["receipt"]
    assert events_of(merchant, first["id"]) == ["refund.created", "refund.succeeded"]
    [sent] = [r["body"] for r in _reversals_of(sim_url, payment["receipt"])]
    assert (sent["Amount"], sent["RecieverIdentifierType"], sent["ReceiverParty"]) == (
        "100",
        "11",
        "174379",
    )
    with merchant.client() as c:
        listed = c.get(f"/v1/payments/{payment['id']}/refunds").json()["data"]
    assert [r["id"] for r in listed] == [first["id"]]
    again = refund(merchant, payment["id"])
    assert again.status_code == 400 and again.json()["error"]["code"] == "already_refunded"
    assert len(_reversals_of(sim_url, payment["receipt"])) == 1


def test_mpesa_partial_refund_is_refused(merchant: Merchant, sim_url: str) -> None:
    payment = paid_payment(merchant, "KES", MPESA_PHONE, "100")
    response = refund(merchant, payment["id"], amount="40")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "partial_refund_not_supported"
    assert _reversals_of(sim_url, payment["receipt"]) == []
    with merchant.client() as c:
        assert c.get(f"/v1/payments/{payment['id']}/refunds").json()["data"] == []


def test_a_disabled_account_sends_no_refund(
    merchant: Merchant, gateway: Gateway, sim_url: str
) -> None:
    """An operator disables an M-Pesa account (shortcode under review, credentials rotated at
    the provider): a refund from it is refused as a payout's approval is (409
    account_disabled), and no reversal leaves; enabled again, it refunds."""
    payment = paid_payment(merchant, "KES", MPESA_PHONE, "100")
    toggle = f"/admin/v1/merchants/{merchant.id}/accounts/{merchant.accounts['mpesa']['id']}"
    with gateway.admin() as admin:
        assert admin.post(f"{toggle}/disable").status_code == 200
        try:
            refused = refund(merchant, payment["id"])
        finally:
            assert admin.post(f"{toggle}/enable").status_code == 200
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "account_disabled"
    assert _reversals_of(sim_url, payment["receipt"]) == []
    assert final(merchant, created(refund(merchant, payment["id"]))["id"])["status"] == "succeeded"


def test_reversal_of_a_reversed_transaction_fails_already_refunded(
    merchant: Merchant, sim_url: str
) -> None:
    payment = paid_payment(merchant, "KES", MPESA_PHONE, "100")
    # Reversed outside Lipwa (the M-Pesa portal, say): Daraja answers R000001 to ours.
    direct = asyncio.run(_direct_reversal(sim_url, payment["receipt"], 100))
    assert direct.outcome is SendOutcome.ACCEPTED
    wait_for(lambda: _reversed_at_sim(sim_url, payment["receipt"]), 10, "the direct reversal")
    done = final(merchant, created(refund(merchant, payment["id"]))["id"])
    assert (done["status"], done["failure_code"], done["provider_code"]) == (
        "failed",
        "already_refunded",
        "R000001",
    )


def test_lost_reversal_result_is_confirmed_by_recovery(merchant: Merchant, sim_url: str) -> None:
    payment = paid_payment(merchant, "KES", MPESA_PHONE, "100")
    set_faults(sim_url, callback_drop_pct=100)
    first = created(refund(merchant, payment["id"]))
    wait_for(
        lambda: any(
            c["dropped"] and c["url"].endswith(f"/reversal/{first['id']}")
            for c in sim_callbacks(sim_url, "reversal_result")
        ),
        10,
    )
    set_faults(sim_url, callback_drop_pct=0)
    done = final(merchant, first["id"], timeout=30)
    # Recovery repeated the reversal towards /reversal-check/: Daraja refused it as already
    # reversed, which confirms the first one. The money went back once.
    assert (done["status"], done["resolved_by"], done["provider_code"]) == (
        "succeeded",
        "query",
        "R000001",
    )
    assert len(_reversals_of(sim_url, payment["receipt"])) >= 2
    ledger = httpx.get(f"{sim_url}/_sim/transactions", params={"provider": "mpesa"}).json()
    executed = [
        t for t in ledger["mpesa"] if t["type"] == "reversal" and t["status"] == "completed"
    ]
    assert len(executed) == 1
    assert events_of(merchant, first["id"]) == ["refund.created", "refund.succeeded"]


def test_a_failed_confirming_repeat_never_fails_a_reversed_refund(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    """Recovery confirms a refund whose reversal result was lost by repeating the reversal.
    A repeat refused for a reason of its own (2001: the initiator was locked since; equally 1:
    the first reversal drained the float) says nothing about the first one, which went
    through: the refund is never failed on that evidence (the merchant would refund again and
    pay twice). It stays open, unknown and checked, and the operator sees an anomaly."""
    payment = paid_payment(merchant, "KES", MPESA_PHONE, "100")
    receipt = payment["receipt"]
    scenario(sim_url, "mpesa", "no_callback", reference=receipt)  # both results are lost
    first = created(refund(merchant, payment["id"]))
    wait_for(lambda: _reversed_at_sim(sim_url, receipt), 10, "the reversal at Daraja")
    wait_for(lambda: len(_reversals_of(sim_url, receipt)) >= 2, 20, "recovery's repeat")
    url = f"{merchant.accounts['mpesa']['callback_url']}/reversal-check/{first['id']}"
    answer = httpx.post(url, json={"Result": {
        "ResultType": 0, "ResultCode": 2001,
        "ResultDesc": "The initiator information is invalid.",
        "OriginatorConversationID": str(uuid.uuid4()), "ConversationID": "AG_20260101_x",
        "TransactionID": "NLJ0000000"}})  # fmt: skip
    assert answer.status_code == 200
    assert anomaly_kinds(database_url, first["id"]) == ["reversal_unconfirmed"]
    with merchant.client() as c:
        now = c.get(f"/v1/refunds/{first['id']}").json()
    assert now["status"] == "unknown", now
    [row] = db_rows(
        database_url, "SELECT next_check_at FROM refunds WHERE id = :id", id=first["id"]
    )
    assert row["next_check_at"] is not None  # still checked
    # A later repeat that is answered (R000001: already reversed) settles it.
    scenario(sim_url, "mpesa", None, reference=receipt)
    done = final(merchant, first["id"], timeout=30)
    assert (done["status"], done["provider_code"]) == ("succeeded", "R000001")
    assert "refund.failed" not in events_of(merchant, first["id"])


def test_a_duplicate_detected_reversal_result_is_checked_not_failed(
    merchant: Merchant, sim_url: str
) -> None:
    """ResultCode 15 answers a repeat, not the reversal: the refund is checked (and found
    reversed) instead of failed while the payer may already have their money back."""
    payment = paid_payment(merchant, "KES", MPESA_PHONE, "100")
    receipt = payment["receipt"]
    scenario(sim_url, "mpesa", "duplicate_detected", reference=receipt)
    first = created(refund(merchant, payment["id"]))
    wait_for(
        lambda: any(
            c["body"]["Result"]["ResultCode"] == 15
            for c in sim_callbacks(sim_url, "reversal_result")
        ),
        10,
        "the duplicate-detected result",
    )
    scenario(sim_url, "mpesa", None, reference=receipt)
    done = final(merchant, first["id"], timeout=30)
    assert (done["status"], done["provider_code"]) == ("succeeded", "R000001")
    assert "refund.failed" not in events_of(merchant, first["id"])
    assert _reversed_at_sim(sim_url, receipt)


def test_a_recheck_timing_out_in_the_queue_keeps_its_back_off(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    """A queue-timeout notice brings the first check forward. Once recovery has checked, a
    re-check's own timeout (the same URL) keeps the back-off: while Daraja sheds load it must
    not set off another real reversal a second later, again and again."""
    payment = paid_payment(merchant, "KES", MPESA_PHONE, "100")
    scenario(sim_url, "mpesa", "pending_forever", reference=payment["receipt"])
    first = created(refund(merchant, payment["id"]))
    url = f"{merchant.accounts['mpesa']['callback_url']}/reversal-timeout/{first['id']}"
    timeout = {"Result": {
        "ResultType": 1, "ResultCode": 26,
        "ResultDesc": "System busy. The service request timed out in the queue.",
        "OriginatorConversationID": str(uuid.uuid4()), "ConversationID": "AG_20260101_y",
        "TransactionID": "NLJ0000000"}}  # fmt: skip

    def next_check_after(check_attempts: int) -> float:
        async def set_due(session: AsyncSession) -> None:
            await session.execute(
                update(Refund)
                .where(Refund.id == first["id"])
                .values(check_attempts=check_attempts, next_check_at=utcnow() + timedelta(hours=1))
            )

        async def due(session: AsyncSession) -> datetime | None:
            row = await session.get(Refund, first["id"], populate_existing=True)
            return row.next_check_at if row else None

        run_db(database_url, set_due)
        assert httpx.post(url, json=timeout).status_code == 200
        at = run_db(database_url, due)
        assert at is not None
        return (at - utcnow()).total_seconds()

    assert next_check_after(3) > 3000  # recovery's back-off stands
    assert next_check_after(0) < 5  # the first send's timeout: checked at once
    scenario(sim_url, "mpesa", None, reference=payment["receipt"])


def test_duplicated_reversal_result_changes_the_refund_once(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    payment = paid_payment(merchant, "KES", MPESA_PHONE, "100")
    set_faults(sim_url, callback_duplicate_pct=100)
    first = created(refund(merchant, payment["id"]))
    assert final(merchant, first["id"])["status"] == "succeeded"

    def outcomes() -> list[str]:
        rows = db_rows(
            database_url,
            "SELECT outcome FROM inbound_callbacks WHERE payment_id = :id",
            id=first["id"],
        )
        return sorted(str(r["outcome"]) for r in rows)

    # Each copy is stored, then applied: wait for both to be applied, not only stored.
    wait_for(lambda: len(outcomes()) == 2 and "None" not in outcomes(), 10, "both copies")
    assert outcomes() == ["applied", "noop"]
    assert events_of(merchant, first["id"]) == ["refund.created", "refund.succeeded"]


def test_concurrent_mpesa_refunds_reverse_once(merchant: Merchant, sim_url: str) -> None:
    payment = paid_payment(merchant, "KES", MPESA_PHONE, "100")
    answers = race(lambda: refund(merchant, payment["id"]), 4)
    assert sorted(a.status_code for a in answers) == [201, 400, 400, 400]
    assert len(_reversals_of(sim_url, payment["receipt"])) == 1


# ----- MoMo refunds ----------------------------------------------------------------------------
def test_momo_partial_refunds_never_exceed_the_payment(
    momo_merchant: Merchant, sim_url: str
) -> None:
    payment = paid_payment(momo_merchant, "RWF", MOMO_PHONE, "1000")
    part = final(momo_merchant, created(refund(momo_merchant, payment["id"], amount="400"))["id"])
    assert (part["status"], part["amount"]) == ("succeeded", "400")
    too_much = refund(momo_merchant, payment["id"], amount="700")
    assert too_much.status_code == 400
    assert too_much.json()["error"]["code"] == "amount_exceeds_refundable"
    rest = final(momo_merchant, created(refund(momo_merchant, payment["id"]))["id"])
    assert (rest["status"], rest["amount"]) == ("succeeded", "600")
    nothing = refund(momo_merchant, payment["id"])
    assert nothing.json()["error"]["code"] == "already_refunded"
    bodies = [r["body"] for r in sim_requests(sim_url, MOMO_REFUND)]
    payment_ref = _payment_reference(sim_url, payment["id"])
    assert [b["referenceIdToRefund"] for b in bodies] == [payment_ref, payment_ref]
    assert [b["amount"] for b in bodies] == ["400", "600"]


def test_concurrent_momo_refunds_cannot_exceed_the_payment(
    momo_merchant: Merchant, sim_url: str
) -> None:
    payment = paid_payment(momo_merchant, "RWF", MOMO_PHONE, "1000")
    answers = race(lambda: refund(momo_merchant, payment["id"], amount="400"), 6)
    assert sorted(a.status_code for a in answers) == [201, 201, 400, 400, 400, 400]
    refused = {a.json()["error"]["code"] for a in answers if a.status_code == 400}
    assert refused == {"amount_exceeds_refundable"}
    for answer in answers:
        if answer.status_code == 201:
            assert final(momo_merchant, answer.json()["id"])["status"] == "succeeded"
    assert len(sim_requests(sim_url, MOMO_REFUND)) == 2


def test_lost_momo_refund_callback_recovered_by_get(momo_merchant: Merchant, sim_url: str) -> None:
    payment = paid_payment(momo_merchant, "RWF", MOMO_PHONE, "1000")
    set_faults(sim_url, callback_drop_pct=100)
    done = final(momo_merchant, created(refund(momo_merchant, payment["id"]))["id"], timeout=30)
    assert (done["status"], done["resolved_by"]) == ("succeeded", "query")
    assert len(sim_requests(sim_url, MOMO_REFUND)) == 1


def test_a_refund_parked_after_a_day_is_settled_when_the_merchant_asks(
    momo_merchant: Merchant, sim_url: str
) -> None:
    """Automatic checks ended after 24 h (say the disbursement key was broken all day) and the
    refund still holds its amount: once fixed, the merchant's refresh asks MTN and settles it."""
    payment = paid_payment(momo_merchant, "RWF", MOMO_PHONE, "1000")
    set_faults(sim_url, callback_drop_pct=100)  # the sim fixture lifts it after the test
    made = created(refund(momo_merchant, payment["id"], amount="300"))

    async def park(session: AsyncSession) -> None:
        a_day_ago = utcnow() - timedelta(hours=25)
        await session.execute(
            update(Refund)
            .where(Refund.id == made["id"])
            .values(status="unknown", next_check_at=None, created_at=a_day_ago)
        )

    run_db(momo_merchant.gateway.settings.database_url, park)
    time.sleep(1.5)  # the worker's rounds leave a parked refund alone
    with momo_merchant.client() as c:
        assert c.get(f"/v1/refunds/{made['id']}").json()["status"] == "unknown"
        deadline = time.monotonic() + 10
        while True:  # MTN may still be processing it ("PENDING") at the first ask
            asked = c.post(f"/v1/refunds/{made['id']}/refresh")
            assert asked.status_code == 200
            if asked.json()["status"] != "unknown" or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    assert (asked.json()["status"], asked.json()["resolved_by"]) == ("succeeded", "query")
    assert len(sim_requests(sim_url, MOMO_REFUND)) >= 1
    rest = refund(momo_merchant, payment["id"], amount="800")  # 300 of 1000 refunded
    assert rest.json()["error"]["code"] == "amount_exceeds_refundable"


def test_only_succeeded_payments_are_refunded(momo_merchant: Merchant, sim_url: str) -> None:
    scenario(sim_url, "momo", "rejected", phone="250788123456")
    response = momo_merchant.pay(amount="1000", currency="RWF", phone=MOMO_PHONE)
    payment = momo_merchant.wait_final(response.json()["id"])
    assert payment["status"] == "failed"
    refused = refund(momo_merchant, payment["id"])
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "payment_not_refundable"
    assert sim_requests(sim_url, MOMO_REFUND) == []


def test_refunds_are_scoped_to_the_merchant(
    momo_merchant: Merchant, merchant_factory: Callable[..., Merchant]
) -> None:
    payment = paid_payment(momo_merchant, "RWF", MOMO_PHONE, "1000")
    mine = created(refund(momo_merchant, payment["id"], amount="100", key="same-key"))
    reused = refund(momo_merchant, payment["id"], amount="200", key="same-key")
    assert reused.status_code == 409
    stranger = merchant_factory(momo_currency="RWF")
    assert refund(stranger, payment["id"]).status_code == 404
    with stranger.client() as c:
        assert c.get(f"/v1/refunds/{mine['id']}").status_code == 404
        assert c.get(f"/v1/payments/{payment['id']}/refunds").status_code == 404


def test_a_retry_after_the_process_died_learns_the_refund(
    momo_merchant: Merchant, sim_url: str, database_url: str
) -> None:
    """A process that wrote the refund ahead and died before it stored its answer leaves a
    key that never gets one: the merchant's retry with the same Idempotency-Key and body is
    shown that refund as it stands, not 409 idempotency_in_progress for ever; nothing is sent
    again."""
    payment = paid_payment(momo_merchant, "RWF", MOMO_PHONE, "1000")
    key = str(uuid.uuid4())
    body = {"reason": "Order cancelled"}
    long_ago = utcnow() - timedelta(hours=1)
    request_id = str(uuid.uuid4())
    row = Refund(
        id=f"re_test{uuid.uuid4().hex[:16]}",
        merchant_id=momo_merchant.id,
        payment_id=payment["id"],
        account_id=momo_merchant.accounts["momo"]["id"],
        mode="test",
        provider="momo",
        status="unknown",
        amount=Decimal(1000),
        currency="RWF",
        reason=body["reason"],
        meta={},
        provider_request_id=request_id,
        provider_ref=request_id,
        send_state="ambiguous",
        check_attempts=0,
        next_check_at=None,  # parked: nothing for the worker to do
        created_at=long_ago,
        updated_at=long_ago,
    )
    claim = IdempotencyKey(
        merchant_id=momo_merchant.id,
        key=f"test:{key}",
        method_path=f"POST /v1/payments/{payment['id']}/refunds",
        request_hash=request_hash(RefundIn(**body).model_dump(mode="json")),
        state="in_progress",
        resource_id=row.id,
        created_at=long_ago,
    )
    insert_rows(database_url, claim, row)
    retry = refund(momo_merchant, payment["id"], key=key, **body)
    assert retry.status_code == 201, retry.text
    assert (retry.json()["id"], retry.json()["status"]) == (row.id, "unknown")
    assert sim_requests(sim_url, MOMO_REFUND) == []


# ----- helpers ----------------------------------------------------------------------------------
def race(call: Callable[[], httpx.Response], n: int) -> list[httpx.Response]:
    """Run ``call`` from ``n`` threads released at the same instant."""
    barrier = threading.Barrier(n)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        answer = call()
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == n
    return answers


def _payment_reference(sim_url: str, payment_id: str) -> str:
    """The X-Reference-Id the gateway used for the payment's request-to-pay."""
    for r in sim_requests(sim_url, "/collection/v1_0/requesttopay"):
        if r["body"]["externalId"] == payment_id:
            return str(r["headers"]["x-reference-id"])
    raise AssertionError(f"no request-to-pay for {payment_id}")


def _reversed_at_sim(sim_url: str, receipt: str) -> bool:
    records = httpx.get(f"{sim_url}/_sim/transactions", params={"provider": "mpesa"}).json()
    return any(r.get("receipt") == receipt and r.get("reversed_by") for r in records["mpesa"])


def _reversals_of(sim_url: str, receipt: str) -> list[dict[str, Any]]:
    return [r for r in sim_requests(sim_url, REVERSAL) if r["body"].get("TransactionID") == receipt]


async def _direct_reversal(sim_url: str, receipt: str, amount: int) -> Any:
    async with httpx.AsyncClient() as http:
        creds = (await http.get(f"{sim_url}/_sim/credentials")).json()["mpesa"]
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
            ),
            http=http,
            tokens=TokenCache(),
        )
        return await client.reversal(
            transaction_id=receipt,
            amount=amount,
            receiver_party=creds["paybill"]["shortcode"],
            result_url="http://127.0.0.1:9/nowhere",
            queue_timeout_url="http://127.0.0.1:9/nowhere",
            remarks="portal",
        )
