"""Daraja simulator: B2C, Transaction Status, Account Balance, Reversal, statement, credentials."""

from __future__ import annotations

import base64
import csv
import io
import re
from decimal import Decimal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding

from tests.simulator.conftest import assert_daraja_error as assert_error

B2C_V3 = "/mpesa/b2c/v3/paymentrequest"
B2C_V1 = "/mpesa/b2c/v1/paymentrequest"
STATUS = "/mpesa/transactionstatus/v1/query"
BALANCE = "/mpesa/accountbalance/v1/query"
REVERSAL = "/mpesa/reversal/v1/request"


def params(result: dict) -> dict:
    return {p["Key"]: p.get("Value") for p in result["ResultParameters"]["ResultParameter"]}


async def paid_stk(daraja, phone: str = "254708374149", amount: int = 100) -> str:
    """A completed STK payment; returns its receipt."""
    checkout_id = (await daraja.push(phone=phone, Amount=amount)).json()["CheckoutRequestID"]
    await daraja.settle()
    receipt = daraja.sim.transactions["mpesa"][checkout_id]["receipt"]
    assert receipt
    return receipt


def status_body(daraja, base: str, **over) -> dict:
    body = daraja.secured(base, CommandID="TransactionStatusQuery", PartyA="174379",
                          IdentifierType="4", Occasion="OK")
    body.pop("InitiatorName")
    body.update(over)
    return body


def reversal_body(daraja, base: str, receipt: str, **over) -> dict:
    body = daraja.secured(base, CommandID="TransactionReversal", TransactionID=receipt,
                          Amount="100", ReceiverParty="174379", RecieverIdentifierType="11")
    body.pop("InitiatorName")
    body.update(over)
    return body


# ----- credentials ---------------------------------------------------------------------------
def test_credentials_shape_and_certificate(daraja_sim):
    from lipwa.simulator.daraja import Daraja

    creds = Daraja(daraja_sim).credentials()
    assert creds["paybill"] == {
        "shortcode": "174379",
        "passkey": "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919",
    }
    assert set(creds["till"]) == {"store_number", "till_number", "passkey"}
    assert creds["c2b"] == {"shortcode": "600984"} and creds["test_msisdn"] == "254708374149"
    b2c = creds["b2c"]
    assert (b2c["shortcode"], b2c["initiator_name"], b2c["initiator_password"]) == (
        "600997", "testapi", "Safaricom999!*!")
    cert = x509.load_pem_x509_certificate(b2c["certificate_pem"].encode())
    assert "NOT Safaricom" in cert.subject.rfc4514_string()
    assert "SIMULATOR" in creds["consumer_key"]


async def test_b2c_v3_success_result(daraja, daraja_receiver):
    body = daraja.b2c_body(daraja_receiver.url, Amount="100")
    response = await daraja.post(B2C_V3, body)
    assert response.status_code == 200
    sync = response.json()
    assert set(sync) == {"ConversationID", "OriginatorConversationID", "ResponseCode",
                         "ResponseDescription"}
    assert sync["OriginatorConversationID"] == body["OriginatorConversationID"]
    assert re.fullmatch(r"AG_\d{8}_[0-9a-f]{20}", sync["ConversationID"])
    assert sync["ResponseCode"] == "0"
    assert sync["ResponseDescription"] == "Accept the service request successfully."

    [result_body] = await daraja_receiver.wait_for("/result")
    result = result_body["Result"]
    assert (result["ResultType"], result["ResultCode"]) == (0, 0)
    assert result["OriginatorConversationID"] == body["OriginatorConversationID"]
    assert result["ConversationID"] == sync["ConversationID"]
    values = params(result)
    assert values["TransactionAmount"] == 100
    assert values["TransactionReceipt"] == result["TransactionID"]
    assert values["ReceiverPartyPublicName"].startswith("254705912645 - ")
    assert re.fullmatch(r"\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}:\d{2}",
                        values["TransactionCompletedDateTime"])
    assert values["B2CUtilityAccountAvailableFunds"] == 999_900.0
    assert values["B2CRecipientIsRegisteredCustomer"] == "Y"
    assert isinstance(result["ReferenceData"]["ReferenceItem"], dict)
    assert daraja.sim.ledger.balances["mpesa:600997:utility"] == Decimal(999_900)
    record = daraja.sim.transactions["mpesa"][body["OriginatorConversationID"]]
    assert record["status"] == "completed" and record["receipt"] == result["TransactionID"]


async def test_b2c_v1_generates_originator_id_and_accepts_occasion_spellings(
    daraja, daraja_receiver
):
    body = daraja.b2c_body(daraja_receiver.url, Occasion="alt spelling")
    del body["OriginatorConversationID"], body["Occassion"]
    response = await daraja.post(B2C_V1, body)
    assert response.status_code == 200, response.text
    assert re.fullmatch(r"\d{5}-\d{8}-1", response.json()["OriginatorConversationID"])
    [result] = await daraja_receiver.wait_for("/result")
    assert result["Result"]["ResultCode"] == 0


async def test_b2c_duplicate_originator_conversation_id(daraja, daraja_receiver):
    body = daraja.b2c_body(daraja_receiver.url)
    assert (await daraja.post(B2C_V3, body)).status_code == 200
    duplicate = await daraja.post(B2C_V3, body)
    assert_error(duplicate, 500, "500.002.1001", "Duplicate OriginatorConversationID")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"OriginatorConversationID": None}, "OriginatorConversationID"),
        ({"Amount": "10.50"}, "Amount"),
        ({"CommandID": "Payment"}, "CommandID"),
        ({"PartyB": "0705912645"}, "PartyB"),
        ({"Remarks": "x"}, "Remarks"),
        ({"ResultURL": "nope"}, "ResultURL"),
        ({"SecurityCredential": ""}, "SecurityCredential"),
    ],
)
async def test_b2c_field_validation(daraja, override, field):
    response = await daraja.post(B2C_V3, daraja.b2c_body("http://127.0.0.1:9", **override))
    assert_error(response, 400, "400.002.02", f"Bad Request - Invalid {field}")


@pytest.mark.parametrize("path", [B2C_V3, B2C_V1, STATUS, BALANCE, REVERSAL])
async def test_secured_family_token_errors(daraja, path):
    missing = await daraja.client.post(path, json={})
    assert_error(missing, 401, "401.002.01", "Error Occurred - Invalid Access Token - ")
    token = await daraja.token()
    daraja.sim.expire_tokens()
    stale = await daraja.post(path, {}, token)
    assert_error(stale, 401, "401.002.01", f"Error Occurred - Invalid Access Token - {token}")


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"SecurityCredential": base64.b64encode(b"garbage").decode()}, 2001),
        ({"InitiatorName": "someoneelse"}, 2001),
        ({"PartyB": "254705910040"}, 2040),
        ({"Amount": 5}, 2),
        ({"Amount": 250_001}, 3),
        ({"PartyA": "600998"}, 21),
    ],
)
async def test_b2c_failures_arrive_async_without_parameters(
    daraja, daraja_receiver, override, code
):
    body = daraja.b2c_body(daraja_receiver.url, **override)
    assert (await daraja.post(B2C_V3, body)).status_code == 200
    [result_body] = await daraja_receiver.wait_for("/result")
    result = result_body["Result"]
    assert result["ResultCode"] == code
    assert "ResultParameters" not in result
    assert re.fullmatch(r"[A-Z0-9]{3}0000000", result["TransactionID"])
    assert daraja.sim.ledger.balances["mpesa:600997:utility"] == Decimal(1_000_000)


async def test_b2c_insufficient_float(daraja, daraja_receiver):
    daraja.sim.ledger.balances["mpesa:600997:utility"] = Decimal(50)
    await daraja.post(B2C_V3, daraja.b2c_body(daraja_receiver.url, Amount=100))
    [result] = await daraja_receiver.wait_for("/result")
    assert result["Result"]["ResultCode"] == 1


async def test_security_credential_made_from_published_certificate(daraja, daraja_receiver):
    """A client encrypts the password with the certificate from credentials() (PKCS#1 v1.5)."""
    cert = x509.load_pem_x509_certificate(daraja.creds["b2c"]["certificate_pem"].encode())
    secret = cert.public_key().encrypt(b"Safaricom999!*!", padding.PKCS1v15())
    body = daraja.b2c_body(daraja_receiver.url,
                           SecurityCredential=base64.b64encode(secret).decode())
    await daraja.post(B2C_V3, body)
    [result] = await daraja_receiver.wait_for("/result")
    assert result["Result"]["ResultCode"] == 0


async def test_b2c_queue_timeout_notice(daraja, daraja_receiver):
    body = daraja.b2c_body(daraja_receiver.url)
    daraja.sim.overrides[("mpesa", "reference", body["OriginatorConversationID"])] = (
        "queue_timeout")
    await daraja.post(B2C_V3, body)
    [notice] = await daraja_receiver.wait_for("/timeout")
    assert notice["Result"]["ResultType"] == 1 and notice["Result"]["ResultCode"] == 26
    assert notice["Result"]["OriginatorConversationID"] == body["OriginatorConversationID"]
    assert daraja_receiver.bodies("/result") == []
    assert daraja.sim.ledger.balances["mpesa:600997:utility"] == Decimal(1_000_000)


async def test_b2c_override_by_phone(daraja, daraja_receiver):
    daraja.sim.overrides[("mpesa", "phone", "254705912645")] = "unregistered_customer"
    await daraja.post(B2C_V3, daraja.b2c_body(daraja_receiver.url))
    [result] = await daraja_receiver.wait_for("/result")
    assert result["Result"]["ResultCode"] == 2040


# ----- Transaction Status --------------------------------------------------------------------
async def test_status_of_stk_receipt(daraja, daraja_receiver):
    receipt = await paid_stk(daraja)
    response = await daraja.post(STATUS, status_body(daraja, daraja_receiver.url,
                                                     TransactionID=receipt))
    assert response.status_code == 200 and response.json()["ResponseCode"] == "0"
    [result_body] = await daraja_receiver.wait_for("/result")
    result = result_body["Result"]
    assert result["ResultCode"] == 0
    values = params(result)
    assert values["ReceiptNo"] == receipt
    assert values["TransactionStatus"] == "Completed"
    assert values["Amount"] == 100.0
    assert values["DebitPartyName"].startswith("254708374149 - ")
    assert "Value" not in next(p for p in result["ResultParameters"]["ResultParameter"]
                               if p["Key"] == "DebitPartyCharges")
    assert result["ReferenceData"]["ReferenceItem"] == {"Key": "Occasion", "Value": "OK"}


async def test_status_by_original_conversation_id(daraja, daraja_receiver):
    b2c = daraja.b2c_body(daraja_receiver.url)
    await daraja.post(B2C_V3, b2c)
    await daraja_receiver.wait_for("/result")
    await daraja.post(STATUS, status_body(
        daraja, daraja_receiver.url, OriginalConversationID=b2c["OriginatorConversationID"]))
    results = await daraja_receiver.wait_for("/result", 2)
    values = params(results[1]["Result"])
    assert values["TransactionStatus"] == "Completed"
    assert values["OriginatorConversationID"] == b2c["OriginatorConversationID"]
    assert values["ReceiptNo"] == results[0]["Result"]["TransactionID"]


async def test_status_of_unknown_transaction(daraja, daraja_receiver):
    await daraja.post(STATUS, status_body(daraja, daraja_receiver.url,
                                          TransactionID="NOPE000000"))
    [result] = await daraja_receiver.wait_for("/result")
    assert result["Result"]["ResultCode"] == "R000002"


async def test_status_needs_an_id(daraja):
    response = await daraja.post(STATUS, status_body(daraja, "http://127.0.0.1:9"))
    assert_error(response, 400, "400.002.02", "Bad Request - Invalid TransactionID")


# ----- Account Balance -----------------------------------------------------------------------
async def test_account_balance_from_ledger(daraja, daraja_receiver):
    await paid_stk(daraja, amount=250)
    body = daraja.secured(daraja_receiver.url, CommandID="AccountBalance", PartyA="174379",
                          IdentifierType="4")
    body.pop("InitiatorName")
    assert (await daraja.post(BALANCE, body)).status_code == 200
    [result_body] = await daraja_receiver.wait_for("/result")
    result = result_body["Result"]
    assert (result["ResultType"], result["ResultCode"]) == ("0", "0")  # strings here
    values = params(result)
    accounts = [line.split("|") for line in values["AccountBalance"].split("&")]
    assert [a[0] for a in accounts] == ["Working Account", "Utility Account",
                                        "Charges Paid Account"]
    assert accounts[0][1:4] == ["KES", "250.00", "250.00"]
    assert re.fullmatch(r"\d{14}", str(values["BOCompletedTime"]))


# ----- Reversal ------------------------------------------------------------------------------
async def test_reversal_success_then_already_reversed(daraja, daraja_receiver):
    receipt = await paid_stk(daraja)
    body = reversal_body(daraja, daraja_receiver.url, receipt)
    assert (await daraja.post(REVERSAL, body)).status_code == 200
    [first] = await daraja_receiver.wait_for("/result")
    assert first["Result"]["ResultCode"] == 0
    values = params(first["Result"])
    assert values["OriginalTransactionID"] == receipt
    assert values["Amount"] == 100.0
    assert values["DebitAccountBalance"].startswith("Working Account|KES|0.00")
    assert re.fullmatch(r"\d{14}", str(values["TransCompletedTime"]))
    assert daraja.sim.ledger.balances["mpesa:174379"] == 0

    await daraja.post(REVERSAL, reversal_body(daraja, daraja_receiver.url, receipt))
    second = (await daraja_receiver.wait_for("/result", 2))[1]
    assert second["Result"]["ResultCode"] == "R000001"
    records = daraja.sim.transactions["mpesa"].values()
    assert any(r.get("receipt") == receipt and r["status"] == "reversed" for r in records)


@pytest.mark.parametrize(
    ("over", "code"),
    [
        ({"TransactionID": "NOPE000000"}, "R000002"),
        ({"Amount": "101"}, 25),
        ({"ReceiverParty": "600984"}, "R000002"),
    ],
)
async def test_reversal_failures(daraja, daraja_receiver, over, code):
    receipt = await paid_stk(daraja)
    await daraja.post(REVERSAL, reversal_body(daraja, daraja_receiver.url, receipt, **over))
    [result] = await daraja_receiver.wait_for("/result")
    assert result["Result"]["ResultCode"] == code
    assert daraja.sim.ledger.balances["mpesa:174379"] == Decimal(100)


async def test_reversal_needs_darajas_misspelled_key(daraja):
    body = reversal_body(daraja, "http://127.0.0.1:9", "ABC1234567")
    body["ReceiverIdentifierType"] = body.pop("RecieverIdentifierType")
    response = await daraja.post(REVERSAL, body)
    assert_error(response, 400, "400.002.02", "Bad Request - Invalid RecieverIdentifierType")


# ----- statement -----------------------------------------------------------------------------
async def test_statement_csv(daraja, daraja_receiver):
    receipt = await paid_stk(daraja)
    await daraja.post(REVERSAL, reversal_body(daraja, daraja_receiver.url, receipt,
                                              Amount="40"))
    await daraja.post(B2C_V3, daraja.b2c_body(daraja_receiver.url))
    await daraja_receiver.wait_for("/result", 2)

    rows = list(csv.DictReader(io.StringIO(daraja.daraja.statement_csv("174379"))))
    assert list(rows[0]) == [
        "Receipt No.", "Completion Time", "Initiation Time", "Details", "Transaction Status",
        "Paid In", "Withdrawn", "Balance", "Balance Confirmed", "Reason Type",
        "Other Party Info", "Linked Transaction ID", "A/C No.",
    ]
    assert len(rows) == 2  # the B2C is on 600997, not in this shortcode's statement
    paid, reversed_ = rows
    assert (paid["Receipt No."], paid["Paid In"], paid["Balance"]) == (receipt, "100.00",
                                                                       "100.00")
    assert paid["A/C No."] == "INV001" and paid["Reason Type"] == "Pay Bill Online"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", paid["Completion Time"])
    assert paid["Other Party Info"].startswith("254708374149 - ")
    assert (reversed_["Withdrawn"], reversed_["Balance"]) == ("-40.00", "60.00")
    assert reversed_["Linked Transaction ID"] == receipt
    everything = list(csv.DictReader(io.StringIO(daraja.daraja.statement_csv(None))))
    assert len(everything) == 3
