"""Daraja simulator: OAuth, bearer checks, M-Pesa Express push/query/callback, outcomes."""

from __future__ import annotations

import asyncio
import base64
import re
from decimal import Decimal

import pytest

from tests.simulator.conftest import assert_daraja_error as assert_error

CHECKOUT_ID = re.compile(r"ws_CO_\d{14}\d{3}\d{9}")
RECEIPT = re.compile(r"[A-Z0-9]{10}")


# ----- OAuth ---------------------------------------------------------------------------------
async def test_oauth_issues_token_with_string_expiry(daraja):
    creds = daraja.creds
    response = await daraja.client.get(
        "/oauth/v1/generate?grant_type=client_credentials",
        auth=(creds["consumer_key"], creds["consumer_secret"]),
    )
    assert response.status_code == 200
    body = response.json()
    assert re.fullmatch(r"[A-Za-z0-9]{28}", body["access_token"])
    assert body["expires_in"] == "3599"  # a string on the wire


@pytest.mark.parametrize(
    ("query", "auth", "code"),
    [
        ("grant_type=client_credentials", None, "400.008.01"),
        ("grant_type=client_credentials", "Bearer abc", "400.008.01"),
        ("", "basic", "400.008.02"),
        ("grant_type=password", "basic", "400.008.02"),
        ("grant_type=client_credentials", "wrong", "400.008.01"),
        ("grant_type=client_credentials", "Basic %%%notbase64", "400.008.01"),
    ],
)
async def test_oauth_errors(daraja, query, auth, code):
    creds = daraja.creds
    pair = f"{creds['consumer_key']}:{creds['consumer_secret']}"
    headers = {}
    if auth == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    elif auth == "wrong":
        headers["Authorization"] = "Basic " + base64.b64encode(b"key:nope").decode()
    elif auth:
        headers["Authorization"] = auth
    response = await daraja.client.get(f"/oauth/v1/generate?{query}", headers=headers)
    assert_error(response, 400, code)


async def test_oauth_wrong_method(daraja):
    response = await daraja.client.post("/oauth/v1/generate?grant_type=client_credentials")
    assert_error(response, 405, "405.001")


# ----- bearer tokens ---------------------------------------------------------------------------
async def test_stale_token_is_rejected_and_a_fresh_one_works(daraja):
    token = await daraja.token()
    assert (await daraja.post("/mpesa/stkpush/v1/processrequest", daraja.stk_body(),
                              token)).status_code == 200
    daraja.sim.expire_tokens("mpesa")
    stale = await daraja.post("/mpesa/stkpushquery/v1/query", {}, token)
    assert_error(stale, 404, "404.001.03", "Invalid Access Token")
    fresh = await daraja.push(phone="254708374150")
    assert fresh.status_code == 200


@pytest.mark.parametrize(
    ("authorization", "status", "code"),
    [
        (None, 404, "404.001.03"),
        ("Bearer unknown-token", 404, "404.001.03"),
        ("Bearer", 404, "404.001.03"),
        ("Basic abc", 404, "404.001.04"),
        ("token-without-scheme", 404, "404.001.04"),
    ],
)
async def test_stk_token_errors(daraja, authorization, status, code):
    headers = {"Authorization": authorization} if authorization else {}
    response = await daraja.client.post(
        "/mpesa/stkpush/v1/processrequest", json=daraja.stk_body(), headers=headers
    )
    assert_error(response, status, code)


async def test_request_is_recorded(daraja):
    await daraja.push()
    logged = [r for r in daraja.sim.requests if r["path"] == "/mpesa/stkpush/v1/processrequest"]
    assert logged[-1]["provider"] == "mpesa"
    assert logged[-1]["body"]["AccountReference"] == "INV001"
    assert logged[-1]["headers"]["authorization"].startswith("Bearer ")


# ----- STK push: sync answer and validation -----------------------------------------------
async def test_push_accepted_shape(daraja):
    response = await daraja.push()
    assert response.status_code == 200
    body = response.json()
    assert body["ResponseCode"] == "0"
    assert body["ResponseDescription"] == "Success. Request accepted for processing"
    assert body["CustomerMessage"] == "Success. Request accepted for processing"
    assert CHECKOUT_ID.fullmatch(body["CheckoutRequestID"])
    assert body["CheckoutRequestID"].endswith("708374149")
    assert isinstance(body["MerchantRequestID"], str) and body["MerchantRequestID"]
    record = daraja.sim.transactions["mpesa"][body["CheckoutRequestID"]]
    assert record["status"] == "pending"
    assert record["amount"] == 10 and record["account_reference"] == "INV001"


async def test_official_sandbox_password_sample_is_accepted(daraja):
    """§5.1: the official sample Password decodes to 174379 + passkey + 20210628092408."""
    sample = (
        "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQy"
        "YzkxOTIwMjEwNjI4MDkyNDA4"
    )
    response = await daraja.push(Password=sample, Timestamp="20210628092408")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"Password": "d3Jvbmc="}, "Wrong credentials"),
        ({"Timestamp": "20240101120001"}, "Wrong credentials"),  # not the one in Password
        ({"BusinessShortCode": 999999}, "Merchant does not exist"),
    ],
)
async def test_push_merchant_errors(daraja, override, message):
    response = await daraja.push(**override)
    assert_error(response, 500, "500.001.1001", message)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Amount", 1.5),
        ("Amount", "1.5"),
        ("Amount", 0),
        ("Amount", 250_001),
        ("Amount", "ten"),
        ("Amount", True),
        ("PhoneNumber", "0708374149"),
        ("PhoneNumber", "+254708374149"),
        ("PhoneNumber", 25470837414),
        ("PhoneNumber", "255712345678"),
        ("PartyA", "2547083741490"),
        ("BusinessShortCode", "abc"),
        ("Timestamp", "2024"),
        ("Timestamp", "20241301120000"),
        ("TransactionType", "CustomerPayBill"),
        ("CallBackURL", "ftp://example.com/cb"),
        ("CallBackURL", "not a url"),
        ("CallBackURL", None),
        ("AccountReference", "A" * 13),
        ("AccountReference", ""),
        ("TransactionDesc", "D" * 14),
    ],
)
async def test_push_field_validation(daraja, field, value):
    body = daraja.stk_body(**{field: value})
    response = await daraja.post("/mpesa/stkpush/v1/processrequest", body)
    assert_error(response, 400, "400.002.02", f"Bad Request - Invalid {field}")


@pytest.mark.parametrize(
    "override",
    [
        {"Amount": "10"},
        {"Amount": 10.0},
        {"BusinessShortCode": "174379", "PartyB": "174379"},
        {"PhoneNumber": 254110374149, "PartyA": "254110374149"},  # 2541 prefix
        {"TransactionDesc": None},  # optional
        {"AccountReference": 12345},
    ],
)
async def test_push_accepts_documented_type_variants(daraja, override):
    response = await daraja.push(**override)
    assert response.status_code == 200, response.text


async def test_push_payload_errors(daraja):
    token = await daraja.token()
    auth = {"Authorization": f"Bearer {token}"}
    path = "/mpesa/stkpush/v1/processrequest"
    bad_json = await daraja.client.post(
        path, content=b"{nope", headers={**auth, "Content-Type": "application/json"}
    )
    assert_error(bad_json, 400, "400.002.05", "Invalid Request Payload")
    array = await daraja.client.post(path, json=[1, 2], headers=auth)
    assert_error(array, 400, "400.002.05")
    nan = await daraja.client.post(
        path, content=b'{"Amount": NaN}', headers={**auth, "Content-Type": "application/json"}
    )
    assert_error(nan, 400, "400.002.05")  # not JSON, though Python's parser would take it
    # A wrong Content-Type is a documented cause of "Invalid BusinessShortCode" (§1).
    form = await daraja.client.post(path, data={"a": "b"}, headers=auth)
    assert_error(form, 400, "400.002.02", "Bad Request - Invalid BusinessShortCode")
    wrong_method = await daraja.client.get(path, headers=auth)
    assert_error(wrong_method, 405, "405.001")
    unknown = await daraja.client.post("/mpesa/stkpush/v9/nothing", json={}, headers=auth)
    assert_error(unknown, 404, "404.001.01")


# ----- STK callback and ledger -------------------------------------------------------------
async def test_success_callback_exact_shape_and_ledger(daraja, daraja_receiver):
    callback = f"{daraja_receiver.url}/stk"
    response = await daraja.push(callback=callback, Amount=1)
    checkout_id = response.json()["CheckoutRequestID"]
    [body] = await daraja_receiver.wait_for("/stk")
    assert set(body) == {"Body"} and set(body["Body"]) == {"stkCallback"}
    cb = body["Body"]["stkCallback"]
    assert cb["CheckoutRequestID"] == checkout_id
    assert cb["MerchantRequestID"] == response.json()["MerchantRequestID"]
    assert cb["ResultCode"] == 0 and isinstance(cb["ResultCode"], int)
    assert cb["ResultDesc"] == "The service request is processed successfully."
    items = {item["Name"]: item for item in cb["CallbackMetadata"]["Item"]}
    assert items["Amount"]["Value"] == 1.0 and isinstance(items["Amount"]["Value"], float)
    receipt = items["MpesaReceiptNumber"]["Value"]
    assert RECEIPT.fullmatch(receipt)
    assert "Value" not in items["Balance"]
    date = items["TransactionDate"]["Value"]
    assert isinstance(date, int) and len(str(date)) == 14
    assert items["PhoneNumber"]["Value"] == 254708374149
    assert "AccountReference" not in str(cb)  # never echoed back

    record = daraja.sim.transactions["mpesa"][checkout_id]
    assert record["status"] == "completed" and record["receipt"] == receipt
    assert record["result_code"] == 0 and record["completed_at"] >= record["created_at"]
    assert daraja.sim.ledger.balances["mpesa:174379"] == Decimal(1)
    row = daraja.sim.ledger.rows[-1]
    assert (row.receipt, row.party, row.reference) == (receipt, "254708374149", "INV001")


async def test_failure_callback_has_no_metadata(daraja, daraja_receiver):
    await daraja.push(phone="254708371032", callback=f"{daraja_receiver.url}/stk")
    [body] = await daraja_receiver.wait_for("/stk")
    cb = body["Body"]["stkCallback"]
    assert cb["ResultCode"] == 1032 and cb["ResultDesc"] == "Request cancelled by user"
    assert "CallbackMetadata" not in cb
    assert daraja.sim.ledger.balances["mpesa:174379"] == 0


async def test_receipts_are_unique(daraja):
    phones = [f"2547083{n:05d}" for n in range(100, 140)]  # no special last-4
    for phone in phones:
        assert (await daraja.push(phone=phone)).status_code == 200
    await daraja.settle()
    receipts = [r["receipt"] for r in daraja.sim.transactions["mpesa"].values()]
    assert len(set(receipts)) == 40 and all(RECEIPT.fullmatch(r) for r in receipts)


# ----- STK query ---------------------------------------------------------------------------
async def test_query_while_open_then_final(daraja):
    checkout_id = (await daraja.push(phone="254708371032")).json()["CheckoutRequestID"]
    pending = await daraja.query(checkout_id)
    body = assert_error(pending, 500, "500.001.1001", "The transaction is being processed")
    assert body["requestId"] == checkout_id
    await daraja.settle()
    final = await daraja.query(checkout_id)
    assert final.status_code == 200
    assert final.json() == {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successfully",
        "MerchantRequestID": daraja.sim.transactions["mpesa"][checkout_id]["merchant_request_id"],
        "CheckoutRequestID": checkout_id,
        "ResultCode": "1032",
        "ResultDesc": "Request cancelled by user",
    }


async def test_query_errors(daraja):
    unknown = await daraja.query("ws_CO_000000000000000000000000")
    assert_error(unknown, 400, "400.002.02", "Bad Request - Invalid CheckoutRequestID")
    checkout_id = (await daraja.push()).json()["CheckoutRequestID"]
    body = {"BusinessShortCode": "174379", "Password": "eA==", "Timestamp": daraja.STAMP,
            "CheckoutRequestID": checkout_id}
    wrong = await daraja.post("/mpesa/stkpushquery/v1/query", body)
    assert_error(wrong, 500, "500.001.1001", "Wrong credentials")


async def test_query_reports_result_even_if_callback_dropped(daraja):
    daraja.sim.faults.update({"callback_drop_pct": 100})
    checkout_id = (await daraja.push()).json()["CheckoutRequestID"]
    await daraja.settle()
    assert daraja.sim.callbacks[-1].dropped
    final = await daraja.query(checkout_id)
    assert final.json()["ResultCode"] == "0"


# ----- subscriber lock ---------------------------------------------------------------------
async def test_one_open_prompt_per_subscriber(daraja):
    assert (await daraja.push()).status_code == 200
    locked = await daraja.push(AccountReference="INV002")
    assert_error(
        locked, 500, "500.001.1001",
        "Unable to lock subscriber, a transaction is already in process for the current "
        "subscriber",
    )
    other = await daraja.push(phone="254708374150")
    assert other.status_code == 200  # the lock is per subscriber
    await daraja.settle()
    assert (await daraja.push()).status_code == 200  # released once the prompt ends


# ----- paybill vs till ----------------------------------------------------------------------
async def test_till_payment_credits_the_till(daraja):
    response = await daraja.post("/mpesa/stkpush/v1/processrequest", daraja.till_body())
    assert response.status_code == 200, response.text
    checkout_id = response.json()["CheckoutRequestID"]
    await daraja.settle()
    final = await daraja.query(checkout_id, "600100", daraja.creds["till"]["passkey"])
    assert final.json()["ResultCode"] == "0"
    assert daraja.sim.ledger.balances["mpesa:600101"] == Decimal(10)


async def test_till_needs_its_own_passkey(daraja):
    body = daraja.till_body(Password=daraja.password("600100"))  # paybill passkey
    response = await daraja.post("/mpesa/stkpush/v1/processrequest", body)
    assert_error(response, 500, "500.001.1001", "Wrong credentials")


@pytest.mark.parametrize(
    "kind",
    ["buygoods_with_paybill_as_partyb", "paybill_with_other_partyb", "paybill_type_on_store"],
)
async def test_product_mismatch_is_accepted_then_fails_2028(daraja, daraja_receiver, kind):
    callback = f"{daraja_receiver.url}/stk"
    if kind == "buygoods_with_paybill_as_partyb":
        body = daraja.till_body(PartyB=174379, CallBackURL=callback)
    elif kind == "paybill_with_other_partyb":
        body = daraja.stk_body(PartyB=600101, callback=callback)
    else:
        body = daraja.till_body(TransactionType="CustomerPayBillOnline", CallBackURL=callback)
    response = await daraja.post("/mpesa/stkpush/v1/processrequest", body)
    assert response.status_code == 200 and response.json()["ResponseCode"] == "0"
    [cb] = await daraja_receiver.wait_for("/stk")
    assert cb["Body"]["stkCallback"]["ResultCode"] == 2028
    assert "CallbackMetadata" not in cb["Body"]["stkCallback"]
    assert sum(daraja.sim.ledger.balances.values()) == Decimal(1_000_000)  # only the B2C float


# ----- outcome table and overrides ----------------------------------------------------------
@pytest.mark.parametrize(
    ("last_four", "code", "status"),
    [
        ("1032", 1032, "failed"),
        ("1037", 1037, "failed"),
        ("0001", 1, "failed"),
        ("2001", 2001, "failed"),
        ("1001", 1001, "failed"),
        ("4149", 0, "completed"),
        ("5555", 0, "completed"),
    ],
)
async def test_outcome_by_last_four_digits(daraja, last_four, code, status):
    checkout_id = (await daraja.push(phone=f"25470837{last_four}")).json()["CheckoutRequestID"]
    await daraja.settle()
    record = daraja.sim.transactions["mpesa"][checkout_id]
    assert (record["result_code"], record["status"]) == (code, status)
    assert (await daraja.query(checkout_id)).json()["ResultCode"] == str(code)
    assert (record["receipt"] is None) == (code != 0)


async def test_override_by_account_reference_and_by_phone(daraja):
    sim = daraja.sim
    sim.overrides[("mpesa", "reference", "ORDER-X")] = "expired"
    sim.overrides[("mpesa", "phone", "254708370000")] = "cancelled"
    sim.overrides[("mpesa", "phone", "254708371032")] = "success"  # beats the last-4 rule
    by_ref = (await daraja.push(AccountReference="ORDER-X")).json()["CheckoutRequestID"]
    by_phone = (await daraja.push(phone="254708370000")).json()["CheckoutRequestID"]
    forced = (await daraja.push(phone="254708371032")).json()["CheckoutRequestID"]
    await daraja.settle()
    records = sim.transactions["mpesa"]
    assert records[by_ref]["result_code"] == 1019
    assert records[by_phone]["result_code"] == 1032
    assert records[forced]["result_code"] == 0


async def test_override_by_checkout_request_id_after_push(daraja):
    daraja.sim.settings.prompt_seconds = 0.3
    checkout_id = (await daraja.push()).json()["CheckoutRequestID"]
    daraja.sim.overrides[("mpesa", "reference", checkout_id)] = "insufficient_funds"
    await daraja.settle()
    assert daraja.sim.transactions["mpesa"][checkout_id]["result_code"] == 1


async def test_no_callback_override_still_final_for_query(daraja, daraja_receiver):
    daraja.sim.overrides[("mpesa", "phone", "254708374149")] = "no_callback"
    checkout_id = (await daraja.push(callback=f"{daraja_receiver.url}/stk")).json()[
        "CheckoutRequestID"
    ]
    await daraja.settle()
    await asyncio.sleep(0.1)
    assert daraja_receiver.bodies("/stk") == [] and daraja.sim.callbacks == []
    assert (await daraja.query(checkout_id)).json()["ResultCode"] == "0"


async def test_pending_forever_keeps_query_processing_but_frees_the_phone(daraja):
    daraja.sim.overrides[("mpesa", "phone", "254708374149")] = "pending_forever"
    checkout_id = (await daraja.push()).json()["CheckoutRequestID"]
    await daraja.settle()
    assert_error(await daraja.query(checkout_id), 500, "500.001.1001",
                 "The transaction is being processed")
    assert daraja.sim.callbacks == []
    assert (await daraja.push(AccountReference="AGAIN")).status_code == 200


def test_outcomes_cover_the_documented_names(daraja_sim):
    from lipwa.simulator.daraja import Daraja

    names = Daraja(daraja_sim).outcomes()
    assert {"success", "cancelled", "unreachable", "insufficient_funds", "wrong_pin",
            "subscriber_locked", "expired", "no_callback", "pending_forever",
            "queue_timeout"} <= names
