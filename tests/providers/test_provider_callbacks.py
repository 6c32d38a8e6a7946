"""parse_stk_callback / parse_momo_callback over the recorded payload shapes, and fuzzing."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lipwa.providers.base import ProviderReport, ReportState
from lipwa.providers.momo import parse_momo_callback
from lipwa.providers.mpesa import parse_stk_callback

# ----- M-Pesa STK callback (daraja.md §2.2) -----------------------------------------------------
STK_SUCCESS: dict[str, Any] = {
    "Body": {
        "stkCallback": {
            "MerchantRequestID": "29115-34620561-1",
            "CheckoutRequestID": "ws_CO_191220191020363925",
            "ResultCode": 0,
            "ResultDesc": "The service request is processed successfully.",
            "CallbackMetadata": {
                "Item": [
                    {"Name": "Amount", "Value": 1.00},
                    {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
                    {"Name": "Balance"},
                    {"Name": "TransactionDate", "Value": 20191219102115},
                    {"Name": "PhoneNumber", "Value": 254708374149},
                ]
            },
        }
    }
}
STK_CANCELLED: dict[str, Any] = {
    "Body": {
        "stkCallback": {
            "MerchantRequestID": "29115-34620561-2",
            "CheckoutRequestID": "ws_CO_191220191020363926",
            "ResultCode": 1032,
            "ResultDesc": "Request cancelled by user",
        }
    }
}


def stk(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(STK_SUCCESS)
    body["Body"]["stkCallback"].update(changes)
    return body


def test_stk_success() -> None:
    parsed = parse_stk_callback(json.loads(json.dumps(STK_SUCCESS)))
    assert parsed is not None
    checkout_id, report = parsed
    assert checkout_id == "ws_CO_191220191020363925"
    assert report == ProviderReport(
        ReportState.SUCCEEDED,
        provider_ref="ws_CO_191220191020363925",
        raw_code="0",
        raw_message="The service request is processed successfully.",
        receipt="NLJ7RT61SV",
        amount=Decimal("1.0"),
        phone="254708374149",
        completed_at=datetime(2019, 12, 19, 7, 21, 15, tzinfo=UTC),
    )
    assert report.completed_at is not None
    assert report.completed_at.utcoffset() is not None
    assert report.completed_at.utcoffset().total_seconds() == 3 * 3600  # type: ignore[union-attr]


def test_stk_failure_has_no_metadata() -> None:
    parsed = parse_stk_callback(STK_CANCELLED)
    assert parsed is not None
    _, report = parsed
    assert report.state is ReportState.FAILED
    assert report.failure_code == "payer_declined"
    assert report.raw_code == "1032"
    assert (report.receipt, report.amount, report.phone, report.completed_at) == (None,) * 4


def test_stk_prefixed_descriptions_and_string_codes() -> None:
    parsed = parse_stk_callback(
        stk(ResultCode="1032", ResultDesc="[STK_CB - ]Request cancelled by user")
    )
    assert parsed is not None
    assert parsed[1].failure_code == "payer_declined"
    assert parsed[1].raw_message == "[STK_CB - ]Request cancelled by user"
    parsed = parse_stk_callback(stk(ResultCode="SFC_IC0003", CallbackMetadata=None))
    assert parsed is not None
    assert (parsed[1].state, parsed[1].failure_code) == (ReportState.FAILED, "invalid_request")


def test_stk_items_by_name_in_any_order_and_without_balance() -> None:
    body = stk()
    items = body["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    body["Body"]["stkCallback"]["CallbackMetadata"]["Item"] = [
        i for i in reversed(items) if i["Name"] != "Balance"
    ]
    parsed = parse_stk_callback(body)
    assert parsed is not None
    assert parsed[1].receipt == "NLJ7RT61SV"
    assert parsed[1].amount == Decimal("1.0")


def test_stk_string_typed_values() -> None:
    body = stk(ResultCode="0")
    body["Body"]["stkCallback"]["CallbackMetadata"]["Item"] = [
        {"Name": "Amount", "Value": "250"},
        {"Name": "MpesaReceiptNumber", "Value": "SG632NMUAB"},
        {"Name": "TransactionDate", "Value": "20240706224852"},
        {"Name": "PhoneNumber", "Value": "254708374149"},
    ]
    parsed = parse_stk_callback(body)
    assert parsed is not None
    report = parsed[1]
    assert report.state is ReportState.SUCCEEDED
    assert report.amount == Decimal(250)
    assert report.phone == "254708374149"
    assert report.completed_at == datetime(2024, 7, 6, 19, 48, 52, tzinfo=UTC)


def test_stk_zero_without_receipt_is_not_paid() -> None:
    body = stk()
    body["Body"]["stkCallback"]["CallbackMetadata"]["Item"] = [{"Name": "Amount", "Value": 1.0}]
    parsed = parse_stk_callback(body)
    assert parsed is not None
    assert parsed[1].state is ReportState.PENDING
    assert parsed[1].raw_code == "0"
    assert parsed[1].receipt is None
    parsed = parse_stk_callback(stk(CallbackMetadata=None))
    assert parsed is not None
    assert parsed[1].state is ReportState.PENDING


def test_stk_bad_dates_and_amounts_become_none() -> None:
    body = stk()
    body["Body"]["stkCallback"]["CallbackMetadata"]["Item"] = [
        {"Name": "Amount", "Value": "lots"},
        {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
        {"Name": "TransactionDate", "Value": 20191399999999},
        {"Name": "PhoneNumber", "Value": None},
    ]
    parsed = parse_stk_callback(body)
    assert parsed is not None
    assert (parsed[1].amount, parsed[1].completed_at, parsed[1].phone) == (None, None, None)
    assert parsed[1].state is ReportState.SUCCEEDED


def test_not_an_stk_callback() -> None:
    b2c_result = {"Result": {"ResultType": 0, "ResultCode": 0, "ConversationID": "AG_1"}}
    c2b = {"TransactionType": "Pay Bill", "TransID": "RKTQDM7W6S", "TransAmount": "10.00"}
    bodies: tuple[object, ...] = (
        None,
        {},
        [],
        "Body",
        b2c_result,
        c2b,
        {"Body": {}},
        {"Body": {"stkCallback": []}},
        {"Body": {"stkCallback": {"ResultCode": 0}}},
        {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1"}}},
        {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1", "ResultCode": True}}},
        {"Body": {"stkCallback": {"CheckoutRequestID": "", "ResultCode": 0}}},
    )
    for body in bodies:
        assert parse_stk_callback(body) is None, body


# ----- MoMo callback (momo.md §4.3) -------------------------------------------------------------
def test_momo_successful_callback() -> None:
    body = {
        "financialTransactionId": "1927264368",
        "externalId": "pay_123",
        "amount": "100",
        "currency": "EUR",
        "payer": {"partyIdType": "MSISDN", "partyId": "46733123454"},
        "payerMessage": "Order 42",
        "payeeNote": "Thanks",
        "status": "SUCCESSFUL",
    }
    assert parse_momo_callback(body) == ProviderReport(
        ReportState.SUCCEEDED,
        raw_code="SUCCESSFUL",
        receipt="1927264368",
        amount=Decimal(100),
        phone="46733123454",
        external_id="pay_123",
    )


def test_momo_successful_callback_without_a_transaction_id_is_not_paid() -> None:
    report = parse_momo_callback({"status": "SUCCESSFUL", "amount": "100"})
    assert report is not None
    assert report.state is ReportState.PENDING


def test_momo_failed_callbacks_with_flat_or_nested_reason() -> None:
    flat = parse_momo_callback({"status": "FAILED", "reason": "APPROVAL_REJECTED", "amount": 5})
    nested = parse_momo_callback(
        {"status": "FAILED", "reason": {"code": "EXPIRED", "message": "Took too long"}}
    )
    assert flat is not None and nested is not None
    assert (flat.state, flat.failure_code, flat.amount) == (
        ReportState.FAILED,
        "payer_declined",
        Decimal(5),
    )
    assert (nested.failure_code, nested.raw_code, nested.raw_message) == (
        "expired",
        "EXPIRED",
        "Took too long",
    )


def test_momo_payee_callback_and_non_msisdn_party() -> None:
    report = parse_momo_callback(
        {"status": "SUCCESSFUL", "financialTransactionId": 42, "payee": {"partyId": "2507812"}}
    )
    assert report is not None
    assert (report.receipt, report.phone) == ("42", "2507812")
    report = parse_momo_callback(
        {"status": "PENDING", "payer": {"partyIdType": "EMAIL", "partyId": "a@b.c"}}
    )
    assert report is not None
    assert report.phone is None


def test_not_a_momo_callback() -> None:
    bodies: tuple[object, ...] = (None, {}, [], "SUCCESSFUL", {"status": ""}, {"status": 1})
    for body in (*bodies, {"amount": "1"}):
        assert parse_momo_callback(body) is None, body


# ----- fuzzing: never raises ----------------------------------------------------------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=30,
)
stk_items = st.lists(
    st.fixed_dictionaries(
        {"Name": st.sampled_from(["Amount", "MpesaReceiptNumber", "TransactionDate",
                                  "PhoneNumber", "Balance"]) | st.text(max_size=5)},
        optional={"Value": json_values},
    ),
    max_size=6,
)  # fmt: skip
stk_shaped = st.builds(
    lambda checkout, code, desc, items: {
        "Body": {
            "stkCallback": {
                "CheckoutRequestID": checkout,
                "ResultCode": code,
                "ResultDesc": desc,
                "CallbackMetadata": {"Item": items},
            }
        }
    },
    st.text(max_size=10) | json_values,
    st.integers() | st.text(max_size=10) | json_values,
    json_values,
    stk_items | json_values,
)
momo_shaped = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["SUCCESSFUL", "FAILED", "PENDING", "CREATED"]) | json_values,
        "reason": json_values | st.fixed_dictionaries({"code": json_values}),
        "amount": json_values,
        "financialTransactionId": json_values,
        "externalId": json_values,
        "payer": json_values | st.fixed_dictionaries({"partyIdType": json_values,
                                                      "partyId": json_values}),
    },
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, stk_shaped))
def test_parse_stk_callback_never_raises(body: object) -> None:
    parsed = parse_stk_callback(body)
    if parsed is not None:
        checkout_id, report = parsed
        assert isinstance(checkout_id, str) and checkout_id
        assert isinstance(report, ProviderReport)
        if report.state is ReportState.SUCCEEDED:
            assert report.receipt  # never paid without a receipt


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, momo_shaped))
def test_parse_momo_callback_never_raises(body: object) -> None:
    report = parse_momo_callback(body)
    assert report is None or isinstance(report, ProviderReport)
    if report is not None and report.state is ReportState.SUCCEEDED:
        assert report.receipt
