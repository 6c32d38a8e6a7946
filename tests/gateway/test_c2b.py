"""C2B end to end: URL registration with Daraja (the simulator), validation by the merchant's
rules, confirmations becoming ``c2b`` payments, duplicates, and open orders."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from lipwa.cli import app as cli_app
from lipwa.simulator.core import Simulator
from tests.gateway.c2b_support import (
    ensure_registrable_token,
    inbound_rows,
    new_ref,
    payments_with_reference,
    register_c2b,
    set_c2b_rules,
    set_callback_token,
    sim_c2b_record,
    simulate_c2b,
    wait_for,
)
from tests.gateway.conftest import Gateway, Merchant, db_rows, events_for
from tests.gateway.test_callbacks import settled_without_callback

REGISTER_PATH = "/mpesa/c2b/v2/registerurl"


@pytest.fixture
def shop(merchant: Merchant, database_url: str) -> Merchant:
    """A merchant whose M-Pesa paybill has its C2B URLs registered."""
    ensure_registrable_token(database_url, merchant)
    register_c2b(merchant)
    return merchant


def paybill(merchant: Merchant) -> str:
    shortcode: str = merchant.accounts["mpesa"]["config"]["shortcode"]
    return shortcode


def registrations(sim_url: str) -> list[dict[str, Any]]:
    rows = httpx.get(
        f"{sim_url}/_sim/requests", params={"provider": "mpesa", "path": REGISTER_PATH}
    ).json()["requests"]
    return list(rows)


def wait_payment(merchant: Merchant, reference: str) -> dict[str, Any] | None:
    found = wait_for(lambda: payments_with_reference(merchant, reference))
    return found[0] if found else None


# ----- registration ---------------------------------------------------------------------------
def test_register_c2b_sends_the_account_urls_to_daraja(
    merchant: Merchant, sim_url: str, database_url: str
) -> None:
    ensure_registrable_token(database_url, merchant)
    base = merchant.accounts["mpesa"]["callback_url"]
    body = register_c2b(merchant, "Cancelled")
    assert body["registered"] is True and body["response_type"] == "Cancelled"
    assert body["validation_url"] == f"{base}/c2b-validate"
    assert body["confirmation_url"] == f"{base}/c2b-confirm"
    assert body["provider_conversation_id"]  # Daraja's "OriginatorCoversationID" (sic)
    sent = registrations(sim_url)[-1]["body"]
    assert sent == {
        "ShortCode": paybill(merchant),
        "ResponseType": "Cancelled",
        "ConfirmationURL": f"{base}/c2b-confirm",
        "ValidationURL": f"{base}/c2b-validate",
    }
    with merchant.gateway.admin() as admin:
        shown = admin.get(f"/admin/v1/accounts/{merchant.accounts['mpesa']['id']}/c2b").json()
    assert shown["registered"] is True and shown["registered_at"]


@pytest.mark.parametrize(
    ("fragment", "word"), [("xSqLx", "sql"), ("EXEC", "exec"), ("cmd", "cmd"), ("Query", "query")]
)
def test_a_token_daraja_would_refuse_is_never_sent(
    merchant: Merchant, sim_url: str, database_url: str, fragment: str, word: str
) -> None:
    set_callback_token(database_url, merchant.accounts["mpesa"]["id"], f"abc{fragment}defghijk")
    before = len(registrations(sim_url))
    with merchant.gateway.admin() as admin:
        response = admin.post(
            f"/admin/v1/accounts/{merchant.accounts['mpesa']['id']}/register-c2b", json={}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "c2b_url_refused"
    assert f"'{word}'" in error["message"] and "callback token" in error["message"]
    assert f"abc{fragment}" not in error["message"]  # the token itself is not echoed
    assert len(registrations(sim_url)) == before


def test_register_c2b_refuses_a_momo_account(merchant: Merchant) -> None:
    with merchant.gateway.admin() as admin:
        response = admin.post(
            f"/admin/v1/accounts/{merchant.accounts['momo']['id']}/register-c2b", json={}
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "c2b_needs_mpesa"


def test_cli_register_c2b(
    merchant: Merchant, gateway: Gateway, sim_url: str, database_url: str
) -> None:
    ensure_registrable_token(database_url, merchant)
    settings = gateway.settings
    assert settings.encryption_keys is not None
    env = {
        **os.environ,
        "LIPWA_DATABASE_URL": settings.database_url,
        "LIPWA_ENCRYPTION_KEYS": settings.encryption_keys.get_secret_value(),
        "LIPWA_PUBLIC_URL": settings.public_url,
    }
    account_id = merchant.accounts["mpesa"]["id"]
    result = CliRunner().invoke(
        cli_app,
        ["accounts", "register-c2b", account_id, "--response-type", "Completed", "--json"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert '"registered": true' in result.output
    assert registrations(sim_url)[-1]["body"]["ResponseType"] == "Completed"
    bad = CliRunner().invoke(
        cli_app, ["accounts", "register-c2b", account_id, "--response-type", "completed"], env=env
    )
    assert bad.exit_code != 0


# ----- validation and confirmation -------------------------------------------------------------
def test_paybill_payment_becomes_a_succeeded_c2b_payment(
    shop: Merchant, sim_url: str, database_url: str
) -> None:
    with shop.client() as c:
        endpoint = c.post(
            "/v1/webhook-endpoints",
            json={"url": "http://127.0.0.1:9/hooks", "event_types": ["payment.succeeded"]},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
    assert endpoint.status_code == 201, endpoint.text
    ref = new_ref()
    simulate_c2b(sim_url, paybill(shop), amount=250, bill_ref=ref)
    record = sim_c2b_record(sim_url, ref)
    assert record is not None and record["status"] == "completed"
    assert record["validation"]["reply"] == {"ResultCode": "0", "ResultDesc": "Accepted"}
    payment = wait_payment(shop, ref)
    assert payment is not None
    assert payment["channel"] == "c2b" and payment["status"] == "succeeded"
    assert payment["provider"] == "mpesa" and payment["account_id"] == shop.accounts["mpesa"]["id"]
    assert payment["receipt"] == record["trans_id"]
    assert payment["amount"] == "250.00" and payment["currency"] == "KES"
    assert payment["phone"] == "2547 ***** 149"  # masked by Safaricom, kept as given
    assert payment["reference"] == ref and payment["resolved_by"] == "callback"
    assert payment["metadata"]["source"] == "c2b"
    assert payment["metadata"]["bill_ref_number"] == ref
    assert "matched_payment_id" not in payment["metadata"]
    assert sorted(events_for(shop, payment["id"])) == ["payment.created", "payment.succeeded"]
    deliveries = db_rows(
        database_url,
        "SELECT d.status FROM webhook_deliveries d JOIN events e ON e.id = d.event_id "
        "WHERE e.resource_id = :p",
        p=payment["id"],
    )
    assert len(deliveries) == 1  # the endpoint takes payment.succeeded only
    account_id = shop.accounts["mpesa"]["id"]
    validations = [r for r in inbound_rows(database_url, account_id, "c2b-validate")]
    assert validations[-1]["outcome"] == "accepted"
    confirmations = inbound_rows(database_url, account_id, "c2b-confirm")
    assert confirmations[-1]["outcome"] == "applied"
    assert confirmations[-1]["payment_id"] == payment["id"]


def test_unknown_account_number_is_rejected_when_the_merchant_says_so(
    shop: Merchant, sim_url: str, database_url: str
) -> None:
    set_c2b_rules(shop, accept_unknown_accounts=False)
    ref = new_ref("NOPE")
    simulate_c2b(sim_url, paybill(shop), bill_ref=ref)
    record = sim_c2b_record(sim_url, ref)
    assert record is not None
    assert record["status"] == "rejected" and record["result_code"] == "C2B00012"
    assert record["validation"]["reply"] == {"ResultCode": "C2B00012", "ResultDesc": "Rejected"}
    assert record["callback_sent"] is False
    assert payments_with_reference(shop, ref) == []
    rows = inbound_rows(database_url, shop.accounts["mpesa"]["id"], "c2b-validate")
    assert rows[-1]["outcome"] == "rejected" and rows[-1]["detail"].startswith("C2B00012")


def test_without_external_validation_the_rules_cannot_refuse_and_the_money_is_recorded(
    shop: Merchant, sim: Simulator, sim_url: str
) -> None:
    """Most shortcodes have no External Validation: Daraja never asks, the payer's money
    lands whatever the merchant's rules say, and Lipwa records it all the same."""
    set_c2b_rules(shop, accept_unknown_accounts=False)
    sim.settings.update({"c2b_external_validation": False})
    try:
        ref = new_ref("NOVAL")
        simulate_c2b(sim_url, paybill(shop), amount=25, bill_ref=ref)
        payment = wait_payment(shop, ref)
    finally:
        sim.settings.update({"c2b_external_validation": True})
    assert payment is not None
    assert (payment["status"], payment["channel"], payment["amount"]) == (
        "succeeded",
        "c2b",
        "25.00",
    )


def test_account_pattern_makes_an_account_number_known(shop: Merchant, sim_url: str) -> None:
    set_c2b_rules(shop, accept_unknown_accounts=False, account_pattern=r"^ACC\d{4}$")
    known = f"ACC{uuid.uuid4().int % 10_000:04d}"
    simulate_c2b(sim_url, paybill(shop), bill_ref=known)
    record = sim_c2b_record(sim_url, known)
    assert record is not None and record["status"] == "completed"
    assert wait_payment(shop, known) is not None


@pytest.mark.parametrize(("amount", "accepted"), [(49, False), (50, True), (501, False)])
def test_amount_outside_the_limits_is_rejected(
    shop: Merchant, sim_url: str, amount: int, accepted: bool
) -> None:
    set_c2b_rules(shop, min_amount="50", max_amount="500")
    ref = new_ref("AMT")
    simulate_c2b(sim_url, paybill(shop), amount=amount, bill_ref=ref)
    record = sim_c2b_record(sim_url, ref)
    assert record is not None
    if accepted:
        assert record["status"] == "completed"
        assert wait_payment(shop, ref) is not None
    else:
        assert record["status"] == "rejected" and record["result_code"] == "C2B00013"
        assert payments_with_reference(shop, ref) == []


def test_bad_rules_are_refused(shop: Merchant) -> None:
    with shop.gateway.admin() as admin:
        url = f"/admin/v1/accounts/{shop.accounts['mpesa']['id']}/c2b-rules"
        for body, param in [
            ({"account_pattern": "("}, "c2b.account_pattern"),
            ({"min_amount": "100", "max_amount": "10"}, "c2b.min_amount"),
            ({"min_amount": "-1"}, "c2b.min_amount"),
        ]:
            response = admin.put(url, json=body)
            assert response.status_code == 400, body
            assert response.json()["error"]["param"] == param


def test_a_duplicated_confirmation_makes_one_payment(
    shop: Merchant, sim: Simulator, sim_url: str, database_url: str
) -> None:
    httpx.put(f"{sim_url}/_sim/faults", json={"callback_duplicate_pct": 100}).raise_for_status()
    ref = new_ref("DUP")
    simulate_c2b(sim_url, paybill(shop), bill_ref=ref)
    assert sim_c2b_record(sim_url, ref) is not None
    account_id = shop.accounts["mpesa"]["id"]

    def both_stored() -> list[dict[str, Any]]:
        rows = [
            r
            for r in inbound_rows(database_url, account_id, "c2b-confirm")
            if ref in r["body"] and r["processed_at"] is not None
        ]
        return rows if len(rows) == 2 else []

    rows = wait_for(both_stored)
    assert sorted(r["outcome"] for r in rows) == ["applied", "noop"]
    payments = payments_with_reference(shop, ref)
    assert len(payments) == 1
    assert sorted(events_for(shop, payments[0]["id"])) == ["payment.created", "payment.succeeded"]


def test_confirmation_without_validation_and_replayed_by_hand(
    shop: Merchant, gateway: Gateway, database_url: str
) -> None:
    """External Validation is off for most shortcodes: a confirmation alone makes the payment,
    and the same TransID posted again changes nothing."""
    base = shop.accounts["mpesa"]["callback_url"]
    trans_id = "SIM" + uuid.uuid4().hex[:7].upper()
    ref = new_ref("HAND")
    body = {
        "TransactionType": "Pay Bill",
        "TransID": trans_id,
        "TransTime": "20260131120000",
        "TransAmount": "10.50",
        "BusinessShortCode": paybill(shop),
        "BillRefNumber": ref,
        "InvoiceNumber": "",
        "OrgAccountBalance": "1010.50",
        "ThirdPartyTransID": "",
        "MSISDN": "2547 ***** 126",
        "FirstName": "John",
        "MiddleName": "",
        "LastName": "",
    }
    for _ in range(2):
        answer = httpx.post(f"{base}/c2b-confirm", json=body)
        assert answer.status_code == 200
        assert answer.json() == {"ResultCode": 0, "ResultDesc": "Success"}
    payments = payments_with_reference(shop, ref)
    assert len(payments) == 1
    assert payments[0]["amount"] == "10.50" and payments[0]["receipt"] == trans_id
    assert payments[0]["metadata"]["payer_name"] == "John"
    with shop.client() as c:  # a reversal takes whole shillings: never sent cut down to 10
        refused = c.post(
            f"/v1/payments/{payments[0]['id']}/refunds",
            json={},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "amount_not_whole"
    outcomes = [
        r["outcome"]
        for r in inbound_rows(database_url, shop.accounts["mpesa"]["id"], "c2b-confirm")
        if trans_id in r["body"]
    ]
    assert outcomes == ["applied", "noop"]


def test_unknown_token_and_foreign_shortcode_change_nothing(
    shop: Merchant, gateway: Gateway, database_url: str
) -> None:
    ref = new_ref("FORGED")
    body = {
        "TransID": "FRG" + uuid.uuid4().hex[:7],
        "TransAmount": "10.00",
        "BillRefNumber": ref,
        "BusinessShortCode": paybill(shop),
        "MSISDN": "2547 ***** 126",
    }
    forged = httpx.post(f"{gateway.url}/callbacks/not-a-real-token-at-all/c2b-confirm", json=body)
    assert forged.status_code == 200
    rejected = httpx.post(
        f"{gateway.url}/callbacks/not-a-real-token-at-all/c2b-validate", json=body
    )
    assert rejected.json()["ResultCode"] == "C2B00016"
    base = shop.accounts["mpesa"]["callback_url"]
    foreign = {**body, "BusinessShortCode": "999999"}
    assert httpx.post(f"{base}/c2b-validate", json=foreign).json()["ResultCode"] == "C2B00015"
    httpx.post(f"{base}/c2b-confirm", json=foreign).raise_for_status()
    assert payments_with_reference(shop, ref) == []
    rows = db_rows(
        database_url,
        "SELECT outcome FROM inbound_callbacks WHERE kind = 'c2b-confirm' AND body LIKE :b",
        b=f"%{ref}%",
    )
    assert sorted(r["outcome"] for r in rows) == ["forged", "invalid"]


# ----- open orders -----------------------------------------------------------------------------
def test_bill_ref_of_an_open_prompt_payment_is_accepted_and_matched(
    shop: Merchant, sim_url: str
) -> None:
    set_c2b_rules(shop, accept_unknown_accounts=False)
    ref = new_ref("ORD")
    # A MoMo prompt the payer never answers (sandbox "Ongoing"): the order stays open.
    prompt = shop.pay(amount="5.00", currency="EUR", phone="46733123453", reference=ref)
    assert prompt.status_code in (200, 201, 202), prompt.text
    simulate_c2b(sim_url, paybill(shop), amount=100, bill_ref=ref)
    record = sim_c2b_record(sim_url, ref)
    assert record is not None and record["status"] == "completed"
    payments = wait_for(
        lambda: [p for p in payments_with_reference(shop, ref) if p["channel"] == "c2b"]
    )
    assert len(payments) == 1
    assert payments[0]["metadata"]["matched_payment_id"] == prompt.json()["id"]
    with shop.client() as c:  # the prompt payment itself is untouched
        assert c.get(f"/v1/payments/{prompt.json()['id']}").json()["status"] == "pending"


def test_bill_ref_of_a_payment_link_is_accepted_and_tied_to_the_link(
    shop: Merchant, sim_url: str, database_url: str
) -> None:
    set_c2b_rules(shop, accept_unknown_accounts=False)
    with shop.client() as c:
        response = c.post(
            "/v1/payment-links",
            json={"amount": "120", "currency": "KES", "single_use": True},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
    assert response.status_code == 201, response.text
    link = response.json()
    simulate_c2b(sim_url, paybill(shop), amount=120, bill_ref=link["slug"])
    record = sim_c2b_record(sim_url, link["slug"])
    assert record is not None and record["status"] == "completed"
    payment = wait_payment(shop, link["slug"])
    assert payment is not None and payment["metadata"]["link_id"] == link["id"]
    rows = db_rows(database_url, "SELECT link_id FROM payments WHERE id = :p", p=payment["id"])
    assert rows == [{"link_id": link["id"]}]
    with shop.client() as c:  # a single-use link closes once paid
        assert c.get(f"/v1/payment-links/{link['id']}").json()["status"] == "used"
    # Used now: the same account number is unknown again.
    simulate_c2b(sim_url, paybill(shop), amount=120, bill_ref=link["slug"])
    again = wait_for(
        lambda: [
            r
            for r in httpx.get(f"{sim_url}/_sim/transactions", params={"provider": "mpesa"}).json()[
                "mpesa"
            ]
            if r.get("bill_ref_number") == link["slug"] and r["status"] == "rejected"
        ]
    )
    assert again and again[0]["result_code"] == "C2B00012"


def test_a_paybill_payment_is_tied_to_a_link_only_if_the_link_could_take_it(
    shop: Merchant, database_url: str
) -> None:
    """A fixed-amount single-use link named by a paybill payment of another amount, or while
    it is already paid, is not closed or paid twice: the money is recorded, untied."""
    with shop.client() as c:
        link = c.post(
            "/v1/payment-links",
            json={"amount": "5000", "currency": "KES", "single_use": True},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        ).json()
    base = shop.accounts["mpesa"]["callback_url"]

    def confirm(amount: str) -> dict[str, Any]:
        trans_id = "LNK" + uuid.uuid4().hex[:7].upper()
        body = confirmation_of(shop, trans_id, link["slug"], amount)
        httpx.post(f"{base}/c2b-confirm", json=body).raise_for_status()
        [payment] = [
            p for p in payments_with_reference(shop, link["slug"]) if p["receipt"] == trans_id
        ]
        return payment

    wrong = confirm("1.00")
    assert wrong["status"] == "succeeded" and "link_id" not in wrong["metadata"]
    with shop.client() as c:
        assert c.get(f"/v1/payment-links/{link['id']}").json()["status"] == "active"
    right = confirm("5000.00")
    assert right["metadata"]["link_id"] == link["id"]
    with shop.client() as c:
        assert c.get(f"/v1/payment-links/{link['id']}").json()["status"] == "used"
    again = confirm("5000.00")  # a second payer of a link already paid
    assert "link_id" not in again["metadata"]
    tied = db_rows(database_url, "SELECT id FROM payments WHERE link_id = :l", l=link["id"])
    assert [r["id"] for r in tied] == [right["id"]]


# ----- one transaction, two notices --------------------------------------------------------------
def confirmation_of(shop: Merchant, trans_id: str, bill_ref: str, amount: str) -> dict[str, Any]:
    """A C2B confirmation as Daraja would send it for a payment into the paybill."""
    return {
        "TransactionType": "Pay Bill",
        "TransID": trans_id,
        "TransTime": "20261122101010",
        "TransAmount": amount,
        "BusinessShortCode": paybill(shop),
        "BillRefNumber": bill_ref,
        "InvoiceNumber": "",
        "OrgAccountBalance": "",
        "ThirdPartyTransID": "",
        "MSISDN": "2547 ***** 149",
        "FirstName": "John",
        "MiddleName": "",
        "LastName": "",
    }


def test_a_confirmation_of_an_stk_payment_makes_no_second_payment(
    shop: Merchant, database_url: str
) -> None:
    """Daraja may also confirm an STK push's payment to the paybill's C2B URL: its TransID is
    the STK receipt, and the money is counted once."""
    ref = new_ref("TW")  # M-Pesa shows at most 12 characters
    stk = shop.pay(amount="10", currency="KES", phone="0708374149", reference=ref).json()
    receipt = shop.wait_final(stk["id"])["receipt"]
    assert receipt
    base = shop.accounts["mpesa"]["callback_url"]
    answer = httpx.post(f"{base}/c2b-confirm", json=confirmation_of(shop, receipt, ref, "10.00"))
    assert answer.json() == {"ResultCode": 0, "ResultDesc": "Success"}
    payments = payments_with_reference(shop, ref)
    assert [p["id"] for p in payments] == [stk["id"]]
    rows = [
        r
        for r in inbound_rows(database_url, shop.accounts["mpesa"]["id"], "c2b-confirm")
        if receipt in r["body"]
    ]
    assert [(r["outcome"], r["payment_id"]) for r in rows] == [("noop", stk["id"])]


def test_a_confirmation_before_its_stk_callback_is_flagged_for_an_operator(
    shop: Merchant, sim: Simulator, sim_url: str, database_url: str
) -> None:
    """The confirmation came first, so its C2B payment was made and reported; when the STK
    payment then succeeds with the same receipt, an anomaly names both."""
    ref = new_ref("TW")  # M-Pesa shows at most 12 characters
    # Paid at Daraja (its STK query says so), the STK callback not here yet.
    stk, checkout_id = settled_without_callback(
        shop, sim, sim_url, database_url, "254708374100", "success", reference=ref
    )
    receipt = "TWN" + uuid.uuid4().hex[:7].upper()
    base = shop.accounts["mpesa"]["callback_url"]
    httpx.post(f"{base}/c2b-confirm", json=confirmation_of(shop, receipt, ref, "10.00"))
    c2b = [p for p in payments_with_reference(shop, ref) if p["channel"] == "c2b"]
    assert len(c2b) == 1 and c2b[0]["metadata"]["matched_payment_id"] == stk["id"]

    callback = {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "1-2-3",
                "CheckoutRequestID": checkout_id,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": 10.0},
                        {"Name": "MpesaReceiptNumber", "Value": receipt},
                        {"Name": "TransactionDate", "Value": 20261122101010},
                        {"Name": "PhoneNumber", "Value": 254708374100},
                    ]
                },
            }
        }
    }
    httpx.post(f"{base}/stk/{stk['id']}", json=callback).raise_for_status()
    assert shop.wait_final(stk["id"])["status"] == "succeeded"
    anomalies = db_rows(
        database_url, "SELECT kind, detail FROM anomalies WHERE payment_id = :id", id=stk["id"]
    )
    assert [a["kind"] for a in anomalies] == ["receipt_recorded_twice"]
    detail = anomalies[0]["detail"]
    detail = json.loads(detail) if isinstance(detail, str) else detail
    assert detail["c2b_payment_id"] == c2b[0]["id"] and detail["receipt"] == receipt
