"""Daraja simulator: C2B URL registration, simulate, validation and confirmation."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from tests.simulator.conftest import assert_daraja_error as assert_error

C2B = "600984"


def register_body(base: str, response_type: str = "Completed", **over) -> dict:
    body = {
        "ShortCode": C2B,
        "ResponseType": response_type,
        "ConfirmationURL": f"{base}/c2b/confirm",
        "ValidationURL": f"{base}/c2b/validate",
    }
    body.update(over)
    return body


def simulate_body(**over) -> dict:
    body = {"ShortCode": int(C2B), "CommandID": "CustomerPayBillOnline", "Amount": 10,
            "Msisdn": 254708374126, "BillRefNumber": "invoice008"}
    body.update(over)
    return body


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_register_answer_keeps_safaricoms_typo(daraja, daraja_receiver, version):
    response = await daraja.post(f"/mpesa/c2b/{version}/registerurl",
                                 register_body(daraja_receiver.url))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"OriginatorCoversationID", "ResponseCode", "ResponseDescription"}
    assert body["ResponseCode"] == "0" and body["ResponseDescription"] == "Success"
    # Sandbox: registering again just replaces the URLs.
    again = await daraja.post(f"/mpesa/c2b/{version}/registerurl",
                              register_body(daraja_receiver.url, "Cancelled"))
    assert again.status_code == 200
    assert daraja.daraja.c2b_urls[C2B]["response_type"] == "Cancelled"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"ResponseType": "completed"}, "ResponseType"),
        ({"ConfirmationURL": "https://example.com/mpesa/confirm"}, "ConfirmationURL"),
        ({"ValidationURL": "https://example.com/Safaricom/v"}, "ValidationURL"),
        ({"ValidationURL": "https://example.com/c2b/QUERY"}, "ValidationURL"),
        ({"ConfirmationURL": "https://example.com/run.exe"}, "ConfirmationURL"),
        ({"ConfirmationURL": "https://example.com/cmd"}, "ConfirmationURL"),
        ({"ValidationURL": "https://example.com/sql"}, "ValidationURL"),
        ({"ValidationURL": "mailto:x@example.com"}, "ValidationURL"),
        ({"ShortCode": "12"}, "ShortCode"),
        ({"ShortCode": "123456"}, "ShortCode"),  # not one of the simulator's shortcodes
    ],
)
async def test_register_validation(daraja, override, field):
    response = await daraja.post("/mpesa/c2b/v2/registerurl",
                                 register_body("https://merchant.example", **override))
    assert_error(response, 400, "400.002.02", f"Bad Request - Invalid {field}")


async def test_c2b_answers_a_bad_token_with_its_own_code(daraja):
    # daraja.md §3: 400.003.01 on the C2B pages (404.001.03 is the STK pages' code)
    for path in ("/mpesa/c2b/v2/registerurl", "/mpesa/c2b/v1/simulate"):
        response = await daraja.client.post(path, json={})
        assert_error(response, 400, "400.003.01", "Invalid Access Token")


async def test_simulate_needs_registered_urls(daraja):
    response = await daraja.post("/mpesa/c2b/v2/simulate", simulate_body())
    assert_error(response, 500, "500.003.1001")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"CommandID": "BusinessPayment"}, "CommandID"),
        ({"Amount": 10.5}, "Amount"),
        ({"Msisdn": "0708374126"}, "Msisdn"),
        ({"BillRefNumber": "X" * 21}, "BillRefNumber"),
    ],
)
async def test_simulate_validation(daraja, override, field):
    response = await daraja.post("/mpesa/c2b/v1/simulate", simulate_body(**override))
    assert_error(response, 400, "400.002.02", f"Bad Request - Invalid {field}")


async def test_accepted_payment_is_validated_then_confirmed(daraja, daraja_receiver):
    receiver = daraja_receiver
    receiver.replies["/c2b/validate"] = (
        200, {"ResultCode": "0", "ResultDesc": "Accepted", "ThirdPartyTransID": "tp-77"}, 0)
    await daraja.post("/mpesa/c2b/v2/registerurl", register_body(receiver.url))
    response = await daraja.post("/mpesa/c2b/v2/simulate", simulate_body())
    assert response.status_code == 200
    assert response.json()["ResponseCode"] == "0"
    assert response.json()["ResponseDescription"] == "Accept the service request successfully."
    assert "OriginatorCoversationID" in response.json()

    [validation] = await receiver.wait_for("/c2b/validate")
    [confirmation] = await receiver.wait_for("/c2b/confirm")
    assert all(isinstance(v, str) for v in validation.values())
    assert validation["TransactionType"] == "Pay Bill"
    assert re.fullmatch(r"[A-Z0-9]{10}", validation["TransID"])
    assert re.fullmatch(r"\d{14}", validation["TransTime"])
    assert validation["TransAmount"] == "10.00"
    assert validation["BusinessShortCode"] == C2B
    assert validation["BillRefNumber"] == "invoice008"
    assert validation["MSISDN"] == "2547 ***** 126"
    assert validation["OrgAccountBalance"] == "" and validation["ThirdPartyTransID"] == ""
    assert validation["FirstName"]
    assert confirmation["TransID"] == validation["TransID"]
    assert confirmation["OrgAccountBalance"] == "10.00"
    assert confirmation["ThirdPartyTransID"] == "tp-77"

    record = daraja.sim.transactions["mpesa"][validation["TransID"]]
    assert record["status"] == "completed" and record["type"] == "c2b"
    assert daraja.sim.ledger.balances[f"mpesa:{C2B}"] == Decimal(10)


async def test_without_external_validation_every_payment_is_confirmed(daraja, daraja_receiver):
    """Daraja's default: the ValidationURL is never called, so no rule can refuse a payment."""
    receiver = daraja_receiver
    receiver.replies["/c2b/validate"] = (200, {"ResultCode": "C2B00012",
                                               "ResultDesc": "Rejected"}, 0)  # fmt: skip
    daraja.sim.settings.update({"c2b_external_validation": False})
    with pytest.raises(ValueError, match="true or false"):
        daraja.sim.settings.update({"c2b_external_validation": "no"})
    await daraja.post("/mpesa/c2b/v2/registerurl", register_body(receiver.url))
    await daraja.post("/mpesa/c2b/v2/simulate", simulate_body())
    [confirmation] = await receiver.wait_for("/c2b/confirm")
    assert receiver.bodies("/c2b/validate") == []
    record = daraja.sim.transactions["mpesa"][confirmation["TransID"]]
    assert record["status"] == "completed" and record["validation"] is None
    assert daraja.sim.ledger.balances[f"mpesa:{C2B}"] == Decimal(10)


async def test_rejected_by_validation_is_not_confirmed(daraja, daraja_receiver):
    receiver = daraja_receiver
    receiver.replies["/c2b/validate"] = (200, {"ResultCode": "C2B00012",
                                               "ResultDesc": "Rejected"}, 0)
    await daraja.post("/mpesa/c2b/v1/registerurl", register_body(receiver.url))
    await daraja.post("/mpesa/c2b/v1/simulate", simulate_body())
    [validation] = await receiver.wait_for("/c2b/validate")
    await daraja.settle()
    assert receiver.bodies("/c2b/confirm") == []
    record = daraja.sim.transactions["mpesa"][validation["TransID"]]
    assert (record["status"], record["result_code"]) == ("rejected", "C2B00012")
    assert daraja.sim.ledger.balances[f"mpesa:{C2B}"] == 0


@pytest.mark.parametrize(("response_type", "confirmed"), [("Completed", True),
                                                           ("Cancelled", False)])
async def test_unanswered_validation_follows_response_type(
    daraja, daraja_receiver, response_type, confirmed
):
    receiver = daraja_receiver
    # Slower than the simulator's validation timeout (0.3 s in these tests).
    receiver.replies["/c2b/validate"] = (200, {"ResultCode": "0"}, 0.6)
    await daraja.post("/mpesa/c2b/v2/registerurl", register_body(receiver.url, response_type))
    await daraja.post("/mpesa/c2b/v2/simulate", simulate_body())
    [validation] = await receiver.wait_for("/c2b/validate")
    await daraja.sim.drain()
    confirmations = await receiver.wait_for("/c2b/confirm", within=0.3 if not confirmed else 3)
    assert len(confirmations) == (1 if confirmed else 0)
    status = daraja.sim.transactions["mpesa"][validation["TransID"]]["status"]
    assert status == ("completed" if confirmed else "cancelled")


async def test_buy_goods_payment_to_till(daraja, daraja_receiver):
    await daraja.post("/mpesa/c2b/v2/registerurl",
                      register_body(daraja_receiver.url, ShortCode="600101"))
    await daraja.post("/mpesa/c2b/v2/simulate",
                      simulate_body(ShortCode="600101", CommandID="CustomerBuyGoodsOnline"))
    [confirmation] = await daraja_receiver.wait_for("/c2b/confirm")
    assert confirmation["TransactionType"] == "Buy Goods"
    assert confirmation["BillRefNumber"] == ""
    assert daraja.sim.ledger.balances["mpesa:600101"] == Decimal(10)


async def test_no_callback_override_skips_confirmation(daraja, daraja_receiver):
    daraja.sim.overrides[("mpesa", "reference", "invoice008")] = "no_callback"
    await daraja.post("/mpesa/c2b/v2/registerurl", register_body(daraja_receiver.url))
    await daraja.post("/mpesa/c2b/v2/simulate", simulate_body())
    [validation] = await daraja_receiver.wait_for("/c2b/validate")
    await daraja.sim.drain()
    assert daraja_receiver.bodies("/c2b/confirm") == []
    assert daraja.sim.transactions["mpesa"][validation["TransID"]]["status"] == "completed"
