"""GET /v1/balances: M-Pesa (asynchronous Account Balance result), MoMo (synchronous), the
60 s cache, and a result that never comes."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx

from lipwa.simulator.core import Simulator
from tests.gateway.c2b_support import wait_for
from tests.gateway.conftest import Gateway, Merchant, db_rows

BALANCE_PATH = "/mpesa/accountbalance/v1/query"


def balances(merchant: Merchant, **params: Any) -> dict[str, dict[str, Any]]:
    with merchant.client() as c:
        response = c.get("/v1/balances", params=params)
    assert response.status_code == 200, response.text
    return {entry["provider"]: entry for entry in response.json()["data"]}


def balance_requests(sim_url: str) -> list[dict[str, Any]]:
    rows = httpx.get(
        f"{sim_url}/_sim/requests", params={"provider": "mpesa", "path": BALANCE_PATH}
    ).json()["requests"]
    return list(rows)


def sim_balance(sim_url: str, account: str) -> Decimal:
    return Decimal(httpx.get(f"{sim_url}/_sim/accounts").json()[account])


def test_balances_of_both_providers(merchant: Merchant, sim_url: str, database_url: str) -> None:
    started = time.monotonic()
    found = balances(merchant)
    assert time.monotonic() - started < 5  # the M-Pesa result came; no waiting out the 5 s
    mpesa, momo = found["mpesa"], found["momo"]
    assert mpesa["status"] == "available" and mpesa["cached"] is False and mpesa["as_of"]
    lines = {line["account"]: line for line in mpesa["balances"]}
    assert set(lines) == {"Working Account", "Utility Account", "Charges Paid Account"}
    shortcode = merchant.accounts["mpesa"]["config"]["shortcode"]
    working = lines["Working Account"]
    assert working["currency"] == "KES" and len(working["amounts"]) == 4
    assert Decimal(working["available"]) == sim_balance(sim_url, f"mpesa:{shortcode}")
    sent = balance_requests(sim_url)[-1]["body"]
    assert sent["PartyA"] == shortcode and sent["IdentifierType"] == "4"
    assert sent["CommandID"] == "AccountBalance" and sent["SecurityCredential"]
    base = merchant.accounts["mpesa"]["callback_url"]
    assert sent["ResultURL"] == f"{base}/balance/{mpesa['snapshot_id']}"
    assert sent["QueueTimeOutURL"] == f"{base}/balance-timeout/{mpesa['snapshot_id']}"
    assert momo["status"] == "available"
    assert {(b["account"], b["currency"]) for b in momo["balances"]} == {
        ("collection", "EUR"),
        ("disbursement", "EUR"),
    }
    rows = db_rows(
        database_url,
        "SELECT status, provider_ref FROM balance_snapshots WHERE id = :i",
        i=mpesa["snapshot_id"],
    )
    assert rows[0]["status"] == "received" and rows[0]["provider_ref"]  # the ConversationID


def test_balances_are_cached_for_a_minute(merchant: Merchant, sim_url: str) -> None:
    first = balances(merchant)
    asked = len(balance_requests(sim_url))
    second = balances(merchant)
    assert len(balance_requests(sim_url)) == asked  # served from the snapshot
    for provider in ("mpesa", "momo"):
        assert second[provider]["cached"] is True
        assert second[provider]["snapshot_id"] == first[provider]["snapshot_id"]
        assert second[provider]["balances"] == first[provider]["balances"]
    fresh = balances(merchant, refresh="true")
    assert len(balance_requests(sim_url)) == asked + 1
    assert fresh["mpesa"]["cached"] is False
    assert fresh["mpesa"]["snapshot_id"] != first["mpesa"]["snapshot_id"]


def test_a_dropped_balance_result_answers_pending(
    merchant: Merchant, sim: Simulator, sim_url: str, database_url: str
) -> None:
    known = balances(merchant)["mpesa"]  # an earlier answer, shown while the next is pending
    httpx.put(f"{sim_url}/_sim/faults", json={"callback_drop_pct": 100}).raise_for_status()
    started = time.monotonic()
    found = balances(merchant, refresh="true")
    waited = time.monotonic() - started
    assert 4.5 < waited < 9  # waited ~5 s for M-Pesa, then answered
    assert found["mpesa"]["status"] == "pending"
    assert found["mpesa"]["snapshot_id"] == known["snapshot_id"]  # the last one received
    assert found["mpesa"]["balances"] == known["balances"]
    assert found["momo"]["status"] == "available"  # one slow provider does not hide the other
    pending = db_rows(
        database_url,
        "SELECT status FROM balance_snapshots WHERE account_id = :a ORDER BY requested_at DESC",
        a=merchant.accounts["mpesa"]["id"],
    )
    assert pending[0]["status"] == "requested"


def test_a_new_account_with_a_dropped_result_has_no_balances_yet(
    merchant: Merchant, sim_url: str
) -> None:
    httpx.put(f"{sim_url}/_sim/faults", json={"callback_drop_pct": 100}).raise_for_status()
    found = balances(merchant)["mpesa"]
    assert found["status"] == "pending"
    assert found["balances"] == [] and found["as_of"] is None and found["error"] is None


def test_a_failed_balance_result_is_reported(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    """Daraja's ResultCode 2001 (bad initiator credential) ends the request as failed."""
    account = merchant.accounts["mpesa"]["id"]
    # A wrong initiator password: the simulator checks the SecurityCredential when processing.
    with merchant.gateway.admin() as admin:
        creds = httpx.get(f"{sim_url}/_sim/credentials").json()["mpesa"]
        other = admin.post(
            f"/admin/v1/merchants/{merchant.id}/accounts",
            json={
                "provider": "mpesa",
                "environment": "sandbox",
                "base_url": sim_url,
                "label": "wrong initiator",
                "credentials": {
                    "consumer_key": creds["consumer_key"],
                    "consumer_secret": creds["consumer_secret"],
                    "shortcode": creds["paybill"]["shortcode"],
                    "kind": "paybill",
                    "passkey": creds["paybill"]["passkey"],
                    "initiator_name": creds["b2c"]["initiator_name"],
                    "initiator_password": "not-the-password",
                    "certificate_pem": creds["b2c"]["certificate_pem"],
                },
            },
        )
    assert other.status_code == 201, other.text
    with merchant.client() as c:
        data = c.get("/v1/balances").json()["data"]
    by_account = {entry["account_id"]: entry for entry in data}
    assert by_account[account]["status"] == "available"
    wrong = by_account[other.json()["id"]]
    assert wrong["status"] == "failed" and wrong["error"].startswith("2001")
    assert wrong["balances"] == []


def test_a_result_at_another_accounts_url_changes_nothing(
    merchant_factory: Any, gateway: Gateway, sim_url: str, database_url: str
) -> None:
    victim, attacker = merchant_factory(), merchant_factory()
    httpx.put(f"{sim_url}/_sim/faults", json={"callback_drop_pct": 100}).raise_for_status()
    pending = balances(victim)["mpesa"]
    assert pending["status"] == "pending"
    snapshot = db_rows(
        database_url,
        "SELECT id FROM balance_snapshots WHERE account_id = :a AND status = 'requested'",
        a=victim.accounts["mpesa"]["id"],
    )[0]["id"]
    forged = {
        "Result": {
            "ResultType": "0",
            "ResultCode": "0",
            "ResultDesc": "ok",
            "ResultParameters": {
                "ResultParameter": [
                    {"Key": "AccountBalance", "Value": "Working Account|KES|1.00|1.00|0.00|0.00"}
                ]
            },
        }
    }
    base = attacker.accounts["mpesa"]["callback_url"]
    answer = httpx.post(f"{base}/balance/{snapshot}", json=forged)
    assert answer.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
    row = wait_for(
        lambda: db_rows(
            database_url,
            "SELECT outcome FROM inbound_callbacks WHERE kind = 'balance' AND payment_id = :s",
            s=snapshot,
        )
    )
    assert row[0]["outcome"] == "unmatched"
    status = db_rows(database_url, "SELECT status FROM balance_snapshots WHERE id = :s", s=snapshot)
    assert status[0]["status"] == "requested"


def test_new_endpoints_are_documented(gateway: Gateway) -> None:
    spec = httpx.get(f"{gateway.url}/openapi.json").json()
    paths = spec["paths"]
    operations = {
        ("/v1/balances", "get"),
        ("/admin/v1/accounts/{account_id}/register-c2b", "post"),
        ("/admin/v1/accounts/{account_id}/c2b-rules", "put"),
        ("/admin/v1/accounts/{account_id}/c2b", "get"),
        ("/v1/phone-lookup", "post"),
    }
    for path, method in operations:
        operation = paths[path][method]
        assert operation["summary"], path
        answer = operation["responses"]["200"]["content"]["application/json"]
        assert "example" in answer or "examples" in answer, path
        if method in ("post", "put"):
            body = operation["requestBody"]["content"]["application/json"]
            assert body.get("examples"), path
    assert not any("/callbacks/" in path for path in paths)  # provider URLs stay out
