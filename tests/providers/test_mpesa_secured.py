"""Daraja's secured APIs in the provider layer: SecurityCredential, request bodies and the
Result envelopes of B2C, Transaction Status and Reversal (numbers or strings, lists or single
objects, entries without Value)."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric import padding

from lipwa.providers.base import ReportState
from lipwa.providers.mpesa import results, secured
from lipwa.simulator.daraja_wire import simulator_certificate


def test_security_credential_is_pkcs1v15_under_the_certificate() -> None:
    certified = simulator_certificate()
    credential = secured.security_credential(certified.certificate_pem, "Safaricom999!*!")
    plain = certified.key.decrypt(base64.b64decode(credential), padding.PKCS1v15())
    assert plain == b"Safaricom999!*!"
    # random padding: a new credential each time, each valid
    assert credential != secured.security_credential(certified.certificate_pem, "Safaricom999!*!")


def test_bad_certificate_is_missing_initiator() -> None:
    with pytest.raises(secured.MissingInitiator):
        secured.security_credential("not a certificate", "pw")


def test_b2c_and_reversal_bodies() -> None:
    initiator = secured.Initiator("testapi", "CRED", "600997")
    body = secured.b2c_body(
        initiator,
        originator_conversation_id="ocid-1",
        amount=250,
        phone="+254 708 374 149",
        remarks_text="x",
        occasion="",
        result_url="https://gw/r",
        queue_timeout_url="https://gw/t",
        command_id="BusinessPayment",
    )
    assert body["PartyA"] == "600997" and body["PartyB"] == "254708374149"
    assert body["Amount"] == "250" and body["Remarks"] == "Payout"  # 2..100 characters
    assert "Occassion" not in body
    reversal = secured.reversal_body(
        initiator,
        transaction_id="UKM1",
        amount=100,
        receiver_party="174379",
        result_url="https://gw/r",
        queue_timeout_url="https://gw/t",
        remarks_text="Refund",
    )
    assert reversal["RecieverIdentifierType"] == "11"
    assert "ReceiverIdentifierType" not in reversal


B2C_OK = {
    "Result": {
        "ResultType": 0,
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "OriginatorConversationID": "ocid-1",
        "ConversationID": "AG_1",
        "TransactionID": "SG632NMUAB",
        "ResultParameters": {
            "ResultParameter": [
                {"Key": "TransactionAmount", "Value": 10},
                {"Key": "TransactionReceipt", "Value": "SG632NMUAB"},
                {"Key": "ReceiverPartyPublicName", "Value": "254705912645 - JOHN DOE"},
                {"Key": "B2CChargesPaidAccountAvailableFunds"},
            ]
        },
        "ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": "https://x"}},
    }
}


def test_b2c_success_envelope() -> None:
    envelope = results.parse_result(B2C_OK)
    assert envelope is not None
    assert envelope.reference == {"QueueTimeoutURL": "https://x"}
    report = results.b2c_report(envelope)
    assert (report.state, report.receipt, report.amount) == (
        ReportState.SUCCEEDED,
        "SG632NMUAB",
        Decimal(10),
    )
    assert results.recipient_name(envelope) == "JOHN DOE"
    assert report.phone == "254705912645"


def test_b2c_failure_with_string_codes_and_no_parameters() -> None:
    body = {
        "Result": {
            "ResultType": "0",
            "ResultCode": "2040",
            "ResultDesc": "Credit Party customer type can't be supported",
            "OriginatorConversationID": "ocid-1",
            "ConversationID": "AG_1",
            "TransactionID": "NLJ0000000",
            "ReferenceData": {"ReferenceItem": [{"Key": "QueueTimeoutURL", "Value": "https://x"}]},
        }
    }
    envelope = results.parse_result(body)
    assert envelope is not None and envelope.code == "2040"
    report = results.b2c_report(envelope)
    assert (report.state, report.failure_code, report.receipt) == (
        ReportState.FAILED,
        "payer_not_found",
        None,
    )


def test_b2c_zero_without_receipt_is_not_paid() -> None:
    body = {"Result": {"ResultCode": 0, "TransactionID": "NLJ0000000"}}
    envelope = results.parse_result(body)
    assert envelope is not None
    assert results.b2c_report(envelope).state is ReportState.PENDING


def test_status_envelopes() -> None:
    completed = {
        "Result": {
            "ResultCode": 0,
            "ResultParameters": {
                "ResultParameter": [
                    {"Key": "Originator Conversation ID", "Value": "ocid-1"},
                    {"Key": "TransactionStatus", "Value": "Completed"},
                    {"Key": "ReceiptNo", "Value": "UKM9"},
                    {"Key": "Amount", "Value": 250.0},
                    {"Key": "FinalisedTime", "Value": 20240706224852},
                ]
            },
        }
    }
    envelope = results.parse_result(completed)
    assert envelope is not None and results.status_subject(envelope) == "ocid-1"
    report = results.status_report(envelope)
    assert report is not None
    assert (report.state, report.receipt, report.amount) == (
        ReportState.SUCCEEDED,
        "UKM9",
        Decimal("250.0"),
    )
    expired = results.parse_result(
        {"Result": {"ResultCode": "0", "ResultParameters": {"ResultParameter": {
            "Key": "TransactionStatus", "Value": "Expired"}}}}
    )  # fmt: skip
    assert expired is not None
    failed = results.status_report(expired)
    assert failed is not None and failed.failure_code == "expired"
    unknown = results.parse_result({"Result": {"ResultCode": "R000002"}})
    assert unknown is not None
    found = results.status_report(unknown)
    assert found is not None and found.state is ReportState.NOT_FOUND
    busy = results.parse_result({"Result": {"ResultCode": 26}})
    assert busy is not None and results.status_report(busy) is None  # about the query itself


def test_reversal_envelopes() -> None:
    ok = results.parse_result(
        {"Result": {"ResultCode": 0, "TransactionID": "UKMREV1", "ResultParameters": {
            "ResultParameter": [{"Key": "Amount", "Value": 100.0}]}}}
    )  # fmt: skip
    assert ok is not None
    report = results.reversal_report(ok)
    assert (report.state, report.receipt, report.amount) == (
        ReportState.SUCCEEDED,
        "UKMREV1",
        Decimal("100.0"),
    )
    again = results.parse_result({"Result": {"ResultCode": "R000001", "TransactionID": "X"}})
    assert again is not None and again.code == results.ALREADY_REVERSED_CODE
    assert results.reversal_report(again).state is ReportState.FAILED


@pytest.mark.parametrize("body", [None, [], {"Result": {}}, {"Result": {"ResultCode": True}}])
def test_not_an_envelope(body: object) -> None:
    assert results.parse_result(body) is None
