"""Callbacks that misbehave: duplicated, late, reordered, unknown, forged, contradicting."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import httpx
from prometheus_client import REGISTRY
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from lipwa.cli import app as cli_app
from lipwa.clock import utcnow
from lipwa.simulator.core import Simulator
from lipwa.store.tables import InboundCallback
from tests.gateway.conftest import Merchant, db_rows, events_for
from tests.gateway.test_reconciliation import cli_env
from tests.ops_support import run_db


def set_faults(sim_url: str, **faults: float) -> None:
    httpx.put(f"{sim_url}/_sim/faults", json=faults).raise_for_status()


def stk_callback(
    checkout_id: str, result_code: int, receipt: str | None = None, amount: float = 10.0
) -> dict[str, Any]:
    callback: dict[str, Any] = {
        "MerchantRequestID": "1-2-3",
        "CheckoutRequestID": checkout_id,
        "ResultCode": result_code,
        "ResultDesc": "test",
    }
    if result_code == 0:
        callback["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": amount},
                {"Name": "MpesaReceiptNumber", "Value": receipt or "SIM0000001"},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": 20261122101010},
                {"Name": "PhoneNumber", "Value": 254708374149},
            ]
        }
    return {"Body": {"stkCallback": callback}}


def checkout_id_of(database_url: str, payment_id: str) -> str:
    rows = db_rows(database_url, "SELECT provider_ref FROM payments WHERE id = :id", id=payment_id)
    return str(rows[0]["provider_ref"])


def test_duplicated_callbacks_change_state_once(
    merchant: Merchant, sim: Simulator, sim_url: str
) -> None:
    set_faults(sim_url, callback_duplicate_pct=100)
    payment = merchant.pay(amount="10", currency="KES", phone="0708374149").json()
    assert merchant.wait_final(payment["id"])["status"] == "succeeded"
    momo = merchant.pay(amount="3", currency="EUR", phone="+256772123456").json()
    assert merchant.wait_final(momo["id"])["status"] == "succeeded"
    time.sleep(0.5)  # let the twins arrive
    assert sum(1 for c in sim.callbacks if c.duplicate and c.status_code == 200) >= 2
    for pid in (payment["id"], momo["id"]):
        assert events_for(merchant, pid) == ["payment.created", "payment.succeeded"]


def test_late_and_reordered_callbacks_still_land(
    merchant: Merchant, sim: Simulator, sim_url: str
) -> None:
    set_faults(sim_url, callback_delay_min_s=0.3, callback_delay_max_s=1.0, callback_reorder_pct=50)
    ids = [
        merchant.pay(amount="10", currency="KES", phone=f"07083741{i:02d}").json()["id"]
        for i in range(6)
    ]
    finals = [merchant.wait_final(pid, timeout=15) for pid in ids]
    assert [p["status"] for p in finals] == ["succeeded"] * 6
    assert len({p["receipt"] for p in finals}) == 6


def test_unknown_callback_is_recorded_and_changes_nothing(
    merchant: Merchant, gateway: Any, database_url: str
) -> None:
    payment = merchant.pay(amount="10", currency="KES", phone="0708374149").json()
    merchant.wait_final(payment["id"])
    response = httpx.post(
        f"{gateway.url}/callbacks/not-a-real-token-123/stk/{payment['id']}",
        json=stk_callback("ws_CO_forged", 1032),
    )
    assert response.status_code == 200
    rows = db_rows(
        database_url,
        "SELECT outcome FROM inbound_callbacks WHERE payment_id = :id ORDER BY id",
        id=payment["id"],
    )
    assert rows[-1]["outcome"] == "forged"
    assert merchant.wait_final(payment["id"])["status"] == "succeeded"


def test_forged_callback_on_a_real_url_changes_nothing(
    merchant: Merchant, sim: Simulator, sim_url: str, database_url: str
) -> None:
    httpx.put(
        f"{sim_url}/_sim/scenario",
        json={"provider": "mpesa", "phone": "254708374100", "outcome": "pending_forever"},
    ).raise_for_status()
    payment = merchant.pay(amount="10", currency="KES", phone="0708374100").json()
    time.sleep(0.5)
    url = f"{merchant.accounts['mpesa']['callback_url']}/stk/{payment['id']}"
    forged = httpx.post(url, json=stk_callback("ws_CO_not_the_real_one", 0, "FAKE000001"))
    assert forged.status_code == 200
    wrong_amount = httpx.post(
        url, json=stk_callback(checkout_id_of(database_url, payment["id"]), 0, "FAKE000002", 9999.0)
    )
    assert wrong_amount.status_code == 200
    with merchant.client() as c:
        assert c.get(f"/v1/payments/{payment['id']}").json()["status"] == "pending"
    anomalies = db_rows(
        database_url, "SELECT kind FROM anomalies WHERE payment_id = :id", id=payment["id"]
    )
    assert [a["kind"] for a in anomalies] == ["callback_mismatch", "callback_mismatch"]


def test_final_state_never_changes_contradiction_is_an_anomaly(
    merchant: Merchant, database_url: str
) -> None:
    def counted() -> float:
        sample = REGISTRY.get_sample_value(
            "lipwa_anomalies_total", {"kind": "contradicting_report"}
        )
        return sample or 0.0

    payment = merchant.pay(amount="10", currency="KES", phone="0708374149").json()
    final = merchant.wait_final(payment["id"])
    assert final["status"] == "succeeded"
    before = counted()
    url = f"{merchant.accounts['mpesa']['callback_url']}/stk/{payment['id']}"
    late = httpx.post(url, json=stk_callback(checkout_id_of(database_url, payment["id"]), 1032))
    assert late.status_code == 200
    again = merchant.wait_final(payment["id"])
    assert again["status"] == "succeeded"
    assert again["receipt"] == final["receipt"]
    anomalies = db_rows(
        database_url, "SELECT kind FROM anomalies WHERE payment_id = :id", id=payment["id"]
    )
    assert [a["kind"] for a in anomalies] == ["contradicting_report"]
    assert events_for(merchant, payment["id"]) == ["payment.created", "payment.succeeded"]
    # An operator hears of it: counted (LipwaAnomalies alerts) and listed.
    assert counted() == before + 1
    with merchant.gateway.admin() as admin:
        listed = admin.get("/admin/v1/anomalies", params={"merchant_id": merchant.id}).json()
    [anomaly] = listed["data"]
    assert (anomaly["subject_id"], anomaly["kind"]) == (payment["id"], "contradicting_report")
    assert anomaly["detail"]["current_status"] == "succeeded"
    assert anomaly["detail"]["reported_status"] == "failed"
    shown = CliRunner().invoke(
        cli_app,
        ["anomalies", "list", "--merchant", merchant.id, "--json"],
        env=cli_env(merchant.gateway),
    )
    assert shown.exit_code == 0, shown.output
    assert [a["subject_id"] for a in json.loads(shown.output)] == [payment["id"]]


def mpesa_scenario(sim_url: str, phone: str, outcome: str) -> None:
    body = {"provider": "mpesa", "phone": phone, "outcome": outcome}
    httpx.put(f"{sim_url}/_sim/scenario", json=body).raise_for_status()


def settled_without_callback(
    merchant: Merchant,
    sim: Simulator,
    sim_url: str,
    database_url: str,
    phone: str,
    outcome: str,
    **pay: Any,
) -> tuple[dict[str, Any], str]:
    """A payment the simulator has settled (``outcome``) but whose callback it dropped; its
    own status check is seconds away. Returns the payment and its CheckoutRequestID."""
    mpesa_scenario(sim_url, phone, outcome)
    set_faults(sim_url, callback_drop_pct=100)
    payment = merchant.pay(amount="10", currency="KES", phone=phone, **pay).json()
    deadline = time.monotonic() + 10
    while not any(c.dropped and c.url.endswith(payment["id"]) for c in list(sim.callbacks)):
        assert time.monotonic() < deadline, "the simulator never settled the prompt"
        time.sleep(0.05)
    set_faults(sim_url, callback_drop_pct=0)
    return payment, checkout_id_of(database_url, payment["id"])


def stk_queries(sim_url: str, checkout_id: str) -> int:
    """STK queries about this CheckoutRequestID (other tests' payments are queried too)."""
    rows = httpx.get(
        f"{sim_url}/_sim/requests", params={"path": "/mpesa/stkpushquery/v1/query"}
    ).json()["requests"]
    bodies = [r["body"] for r in rows if isinstance(r["body"], dict)]
    return sum(1 for body in bodies if body.get("CheckoutRequestID") == checkout_id)


def test_a_provider_text_longer_than_its_column_still_settles_the_payment(
    merchant: Merchant, sim: Simulator, sim_url: str, database_url: str
) -> None:
    """Daraja chooses the length of ResultDesc: PostgreSQL refused one over the column's
    length, so the callback (and every retry, and the status query) could never settle it."""
    payment, checkout_id = settled_without_callback(
        merchant, sim, sim_url, database_url, "254708374149", "cancelled"
    )
    body = stk_callback(checkout_id, 1032)
    body["Body"]["stkCallback"]["ResultDesc"] = "Request cancelled by user. " * 40
    url = f"{merchant.accounts['mpesa']['callback_url']}/stk/{payment['id']}"
    assert httpx.post(url, json=body).status_code == 200
    done = merchant.wait_final(payment["id"])
    assert (done["status"], done["failure_code"]) == ("failed", "payer_declined")
    assert done["failure_message"].startswith("Request cancelled by user.")
    assert len(done["failure_message"]) == 300
    [stored] = db_rows(
        database_url, "SELECT outcome FROM inbound_callbacks WHERE payment_id = :id",
        id=payment["id"],
    )  # fmt: skip
    assert stored["outcome"] == "applied"


# ----- STK callbacks are confirmed with Daraja's STK query before they are applied ---------------
def test_a_true_stk_callback_is_confirmed_and_keeps_its_receipt(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    payment = merchant.pay(amount="10", currency="KES", phone="0708374149").json()
    final = merchant.wait_final(payment["id"])
    assert (final["status"], final["resolved_by"]) == ("succeeded", "callback")
    assert stk_queries(sim_url, checkout_id_of(database_url, payment["id"])) == 1  # asked once
    assert final["receipt"]  # the callback's MpesaReceiptNumber: the query carries none
    assert anomaly_kinds(database_url, payment["id"], timeout=0.5) == []


def test_a_forged_stk_success_is_overruled_by_the_query(
    merchant: Merchant, sim: Simulator, sim_url: str, database_url: str
) -> None:
    """Someone who learnt the callback URL and the CheckoutRequestID claims a cancelled
    payment was paid: Daraja says otherwise, and Daraja is believed."""
    payment, checkout_id = settled_without_callback(
        merchant, sim, sim_url, database_url, "254708374101", "cancelled"
    )
    url = f"{merchant.accounts['mpesa']['callback_url']}/stk/{payment['id']}"
    forged = httpx.post(url, json=stk_callback(checkout_id, 0, "FAKE000003"))
    assert forged.status_code == 200
    done = merchant.wait_final(payment["id"])
    assert (done["status"], done["failure_code"], done["receipt"]) == (
        "failed", "payer_declined", None,
    )  # fmt: skip
    assert anomaly_kinds(database_url, payment["id"]) == ["callback_contradicted"]
    assert events_for(merchant, payment["id"]) == ["payment.created", "payment.failed"]


def test_a_callback_naming_another_payments_checkout_id_is_not_believed(
    merchant: Merchant, sim_url: str, gateway: Any, database_url: str
) -> None:
    """A payment whose push answer was lost has no CheckoutRequestID of its own; a callback
    naming another payment's (which the STK query would vouch for) must not settle it."""
    paid = merchant.pay(amount="10", currency="KES", phone="0708374149").json()
    assert merchant.wait_final(paid["id"])["status"] == "succeeded"
    mpesa_scenario(sim_url, "254708374103", "pending_forever")
    set_faults(sim_url, answer_delay_ms=(gateway.settings.provider_read_timeout_s + 1) * 1000)
    lost = merchant.pay(amount="10", currency="KES", phone="0708374103").json()
    set_faults(sim_url, answer_delay_ms=0)
    assert lost["status"] == "unknown"
    url = f"{merchant.accounts['mpesa']['callback_url']}/stk/{lost['id']}"
    body = stk_callback(checkout_id_of(database_url, paid["id"]), 0, "FAKE000005")
    assert httpx.post(url, json=body).status_code == 200
    assert anomaly_kinds(database_url, lost["id"]) == ["callback_mismatch"]
    with merchant.client() as c:
        assert c.get(f"/v1/payments/{lost['id']}").json()["status"] == "unknown"


def test_an_stk_callback_daraja_cannot_confirm_yet_waits_for_the_sweep(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    """While the query still says "being processed" the callback is not applied, nor called
    an anomaly: it is asked about again later, and never in a loop."""
    mpesa_scenario(sim_url, "254708374102", "pending_forever")
    payment = merchant.pay(amount="10", currency="KES", phone="0708374102").json()
    wait_for_sent = time.monotonic() + 10
    while checkout_id_of(database_url, payment["id"]) in ("None", ""):
        assert time.monotonic() < wait_for_sent, "the push was never sent"
        time.sleep(0.1)
    url = f"{merchant.accounts['mpesa']['callback_url']}/stk/{payment['id']}"
    checkout_id = checkout_id_of(database_url, payment["id"])
    assert httpx.post(url, json=stk_callback(checkout_id, 0, "FAKE000004")).status_code == 200
    deadline = time.monotonic() + 10
    while True:
        rows = db_rows(
            database_url,
            "SELECT outcome, processed_at, retry_at, received_at FROM inbound_callbacks "
            "WHERE payment_id = :id AND kind = 'stk'",
            id=payment["id"],
        )
        if rows and rows[0]["outcome"] == "unconfirmed":
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)
    [row] = rows
    assert row["processed_at"] is None and row["retry_at"] is not None
    with merchant.client() as c:
        assert c.get(f"/v1/payments/{payment['id']}").json()["status"] == "pending"
    assert anomaly_kinds(database_url, payment["id"], timeout=0.5) == []


def test_callback_is_stored_raw_before_it_is_applied(merchant: Merchant, database_url: str) -> None:
    payment = merchant.pay(amount="10", currency="KES", phone="0708374149").json()
    merchant.wait_final(payment["id"])
    rows = db_rows(
        database_url,
        "SELECT body, outcome, processed_at FROM inbound_callbacks WHERE payment_id = :id",
        id=payment["id"],
    )
    assert rows and rows[0]["outcome"] == "applied"
    assert '"stkCallback"' in rows[0]["body"]


def test_mpesa_throttle_fails_fast_and_sends_once(
    merchant: Merchant, sim: Simulator, sim_url: str
) -> None:
    set_faults(sim_url, error_pct=100)
    response = merchant.pay(amount="10", currency="KES", phone="0708374149")
    assert response.status_code == 201
    payment = response.json()
    assert payment["status"] == "failed"
    assert payment["failure_code"] == "provider_unavailable"
    assert payment["provider_code"] == "500.003.02"


def test_momo_5xx_is_retried_with_the_same_reference(
    merchant: Merchant, sim: Simulator, sim_url: str, database_url: str
) -> None:
    warm = merchant.pay(amount="3", currency="EUR", phone="+256772123456").json()
    assert merchant.wait_final(warm["id"])["status"] == "succeeded"  # token now cached
    set_faults(sim_url, error_pct=100)
    payment = merchant.pay(amount="4", currency="EUR", phone="+256772123456").json()
    # 503 proves nothing was created (a definite, transient refusal); a 500 might have
    # created it, so the answer is unknown until a status query settles it.
    if payment["status"] == "failed":
        assert payment["failure_code"] in {"provider_unavailable", "provider_error"}
    else:
        assert payment["status"] == "unknown"
    warm_ref = db_rows(
        database_url, "SELECT provider_ref FROM payments WHERE id = :id", id=warm["id"]
    )[0]["provider_ref"]
    posts = [
        r
        for r in httpx.get(
            f"{sim_url}/_sim/requests", params={"path": "/collection/v1_0/requesttopay"}
        ).json()["requests"]
        if r["method"] == "POST" and r["headers"].get("x-reference-id") != warm_ref
    ]
    references = {r["headers"].get("x-reference-id") for r in posts}
    assert len(posts) >= 2 and len(references) == 1


def test_a_momo_request_created_despite_its_500_is_paid_once(
    merchant: Merchant, sim: Simulator, sim_url: str
) -> None:
    """MTN answered 500 but had created the request-to-pay: the retry under the same
    X-Reference-Id meets 409, which proves it exists, and the payer is asked once."""
    set_faults(sim_url, created_error_pct=100)
    payment = merchant.pay(amount="5", currency="EUR", phone="+256772123457").json()
    assert payment["status"] != "failed", payment
    assert merchant.wait_final(payment["id"])["status"] == "succeeded"
    posts = [
        r
        for r in httpx.get(
            f"{sim_url}/_sim/requests", params={"path": "/collection/v1_0/requesttopay"}
        ).json()["requests"]
        if r["method"] == "POST" and r["body"].get("externalId") == payment["id"]
    ]
    assert len(posts) >= 2 and len({r["headers"]["x-reference-id"] for r in posts}) == 1
    records = httpx.get(f"{sim_url}/_sim/transactions", params={"provider": "momo"}).json()
    ours = [r for r in records["momo"] if r.get("external_id") == payment["id"]]
    assert len(ours) == 1, ours


def test_provider_timeout_leaves_payment_unknown_and_never_resends(
    merchant: Merchant, sim: Simulator, sim_url: str, gateway: Any
) -> None:
    # A first payment caches the OAuth token, so only the STK push itself times out.
    warm = merchant.pay(amount="10", currency="KES", phone="0708374149").json()
    assert merchant.wait_final(warm["id"])["status"] == "succeeded"
    set_faults(sim_url, latency_ms=(gateway.settings.provider_read_timeout_s + 1.5) * 1000)
    before = len(
        httpx.get(f"{sim_url}/_sim/requests", params={"path": "/mpesa/stkpush/"}).json()["requests"]
    )
    payment = merchant.pay(amount="10", currency="KES", phone="0708374149").json()
    assert payment["status"] == "unknown"
    after = len(
        httpx.get(f"{sim_url}/_sim/requests", params={"path": "/mpesa/stkpush/"}).json()["requests"]
    )
    assert after - before == 1


def test_callback_racing_the_initiation_answer_is_applied(
    merchant: Merchant, sim: Simulator, sim_url: str
) -> None:
    warm = merchant.pay(amount="10", currency="KES", phone="0708374149").json()
    merchant.wait_final(warm["id"])
    httpx.put(f"{sim_url}/_sim/settings", json={"prompt_seconds": 0}).raise_for_status()
    set_faults(sim_url, answer_delay_ms=800)
    payment = merchant.pay(amount="11", currency="KES", phone="0708374149").json()
    # The callback was delivered while the STK answer was still held back.
    callback = next(c for c in sim.callbacks if c.url.endswith(payment["id"]))
    assert callback.status_code == 200
    final = merchant.wait_final(payment["id"])
    assert final["status"] == "succeeded"
    assert final["receipt"]


def test_timeout_after_the_provider_acted_is_settled_by_the_callback(
    merchant: Merchant, sim: Simulator, sim_url: str, gateway: Any
) -> None:
    warm = merchant.pay(amount="10", currency="KES", phone="0708374149").json()
    merchant.wait_final(warm["id"])
    timeout = gateway.settings.provider_read_timeout_s
    # The payer answers after the gateway gave up waiting for Daraja's reply.
    httpx.put(f"{sim_url}/_sim/settings", json={"prompt_seconds": timeout + 0.5})
    set_faults(sim_url, answer_delay_ms=(timeout + 1) * 1000)
    payment = merchant.pay(amount="12", currency="KES", phone="0708374149").json()
    assert payment["status"] == "unknown"  # the gateway cannot know the push went out
    # Daraja is quick again when the callback comes, and its STK query confirms it. The
    # CheckoutRequestID asked about is the callback's: the gateway never learnt its own.
    set_faults(sim_url, answer_delay_ms=0)
    final = merchant.wait_final(payment["id"])
    assert final["status"] == "succeeded"
    assert final["resolved_by"] == "callback"
    assert events_for(merchant, payment["id"]) == [
        "payment.created",
        "payment.unknown",
        "payment.succeeded",
    ]


# ----- MoMo callbacks are confirmed with MTN before they are applied -----------------------------
def momo_callback(payment: dict[str, Any], status: str = "SUCCESSFUL") -> dict[str, Any]:
    return {
        "financialTransactionId": "FAKE-1234567",
        "externalId": payment["id"],
        "amount": payment["amount"].split(".")[0],
        "currency": payment["currency"],
        "payer": {"partyIdType": "MSISDN", "partyId": payment["phone"]},
        "status": status,
    }


def momo_scenario(sim_url: str, phone: str, outcome: str) -> None:
    body = {"provider": "momo", "phone": phone, "outcome": outcome}
    httpx.put(f"{sim_url}/_sim/scenario", json=body).raise_for_status()


def momo_gets(sim_url: str, reference_id: str) -> int:
    path = f"/collection/v1_0/requesttopay/{reference_id}"
    rows = httpx.get(f"{sim_url}/_sim/requests", params={"path": path}).json()["requests"]
    return sum(1 for r in rows if r["method"] == "GET")


def anomaly_kinds(database_url: str, subject_id: str, timeout: float = 10.0) -> list[str]:
    """The subject's anomalies, once there is one (a MoMo callback is applied after its answer)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = db_rows(database_url, "SELECT kind FROM anomalies WHERE payment_id = :id",
                       id=subject_id)  # fmt: skip
        if rows or time.monotonic() > deadline:
            return [r["kind"] for r in rows]
        time.sleep(0.1)


def test_a_forged_momo_success_is_answered_at_once_and_not_believed(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    momo_scenario(sim_url, "256772123400", "ongoing")
    payment = merchant.pay(amount="3", currency="EUR", phone="+256772123400").json()
    reference_id = db_rows(database_url, "SELECT provider_ref FROM payments WHERE id = :id",
                           id=payment["id"])[0]["provider_ref"]  # fmt: skip
    set_faults(sim_url, answer_delay_ms=1500)  # MTN takes its time over the status GET
    url = f"{merchant.accounts['momo']['callback_url']}/momo/{payment['id']}"
    forged = httpx.put(url, json=momo_callback(payment), timeout=1.0)  # answered before that
    assert forged.status_code == 200
    assert anomaly_kinds(database_url, payment["id"]) == ["unconfirmed_callback"]
    assert momo_gets(sim_url, reference_id) == 1  # Lipwa asked MTN, which says PENDING
    with merchant.client() as c:
        assert c.get(f"/v1/payments/{payment['id']}").json()["status"] == "pending"
    assert events_for(merchant, payment["id"]) == ["payment.created"]


def test_a_true_momo_callback_is_applied_as_mtn_confirms_it(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    payment = merchant.pay(amount="3", currency="EUR", phone="+256772123456").json()
    final = merchant.wait_final(payment["id"])
    assert (final["status"], final["resolved_by"]) == ("succeeded", "callback")
    reference_id = db_rows(database_url, "SELECT provider_ref FROM payments WHERE id = :id",
                           id=payment["id"])[0]["provider_ref"]  # fmt: skip
    assert momo_gets(sim_url, reference_id) == 1
    assert final["receipt"]  # MTN's financialTransactionId, from its own answer


def momo_callback_rows(database_url: str, payment_id: str) -> list[dict[str, Any]]:
    return db_rows(database_url, "SELECT outcome, processed_at FROM inbound_callbacks "
                   "WHERE payment_id = :id AND kind = 'momo'", id=payment_id)  # fmt: skip


def test_a_momo_callback_mtn_cannot_be_asked_about_for_a_day_is_given_up(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    """Not retried for ever (a merchant's broken MoMo key would have MTN polled every few
    seconds indefinitely): after a day the row is closed; the payment's own checks go on."""
    momo_scenario(sim_url, "256772123402", "success")
    payment = merchant.pay(amount="3", currency="EUR", phone="+256772123402").json()
    set_faults(sim_url, error_pct=100)
    deadline = time.monotonic() + 10
    while momo_callback_rows(database_url, payment["id"]) != [
        {"outcome": "unconfirmed", "processed_at": None}
    ]:
        assert time.monotonic() < deadline, momo_callback_rows(database_url, payment["id"])
        time.sleep(0.2)

    async def a_day_ago(session: AsyncSession) -> None:
        await session.execute(
            update(InboundCallback)
            .where(InboundCallback.payment_id == payment["id"], InboundCallback.kind == "momo")
            .values(received_at=utcnow() - timedelta(hours=25))
        )

    run_db(database_url, a_day_ago)
    deadline = time.monotonic() + 20
    while True:  # the sweep tries once more, and gives up
        [row] = momo_callback_rows(database_url, payment["id"])
        if row["processed_at"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert row["outcome"] == "unconfirmed" and row["processed_at"] is not None
    set_faults(sim_url, error_pct=0)
    assert merchant.wait_final(payment["id"], timeout=20)["status"] == "succeeded"


def test_a_momo_callback_mtn_cannot_confirm_now_is_applied_later(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    # Every status GET fails for a while: the callback is kept, unapplied, until MTN answers
    # again (the callback sweep or the recovery's status check, whichever comes first).
    momo_scenario(sim_url, "256772123401", "success")
    payment = merchant.pay(amount="3", currency="EUR", phone="+256772123401").json()
    set_faults(sim_url, error_pct=100)
    time.sleep(1.0)  # the prompt settles and its callback arrives while MTN answers 5xx
    with merchant.client() as c:
        assert c.get(f"/v1/payments/{payment['id']}").json()["status"] == "pending"
    # Kept for the sweep, marked as tried (rows never tried are swept first).
    assert momo_callback_rows(database_url, payment["id"]) == [
        {"outcome": "unconfirmed", "processed_at": None}
    ]
    set_faults(sim_url, error_pct=0)
    final = merchant.wait_final(payment["id"], timeout=15)
    assert final["status"] == "succeeded"
    deadline = time.monotonic() + 15
    while True:  # the stored callback is not forgotten either: it ends processed
        [row] = db_rows(database_url, "SELECT outcome, processed_at FROM inbound_callbacks "
                        "WHERE payment_id = :id AND kind = 'momo'", id=payment["id"])  # fmt: skip
        if row["processed_at"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert row["processed_at"] is not None and row["outcome"] in {"applied", "noop"}
