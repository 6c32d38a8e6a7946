"""C2B register answers, URL rules, validation/confirmation bodies, the Account Balance
``&``/``|`` format, MoMo account-holder answers and the merchant's C2B rules: pure parts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from lipwa.domain import c2b as rules
from lipwa.domain.errors import DomainError
from lipwa.providers.momo import account
from lipwa.providers.mpesa import MpesaClient, MpesaCredentials
from lipwa.providers.mpesa.balance import parse_balance_text, read_balance_result
from lipwa.providers.mpesa.c2b import forbidden_words, parse_notice, read_registration
from lipwa.providers.mpesa.results import parse_result
from lipwa.providers.mpesa.wire import DarajaError
from lipwa.providers.tokens import TokenCache


# ----- register URL answers ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        {
            "OriginatorCoversationID": "5118-1",
            "ResponseCode": "0",
            "ResponseDescription": "Success",
        },
        {
            "OriginatorCoversationID": "5118-1",
            "ResponseCode": "00000000",
            "ResponseDescription": "success",
        },
        {"OriginatorCoversationID": "5118-1", "ResponseDescription": "success"},
        {"OriginatorConversationID": "5118-1", "ResponseCode": 0},
    ],
)
def test_register_success_variants(body: dict[str, Any]) -> None:
    answer = read_registration(200, body, None)
    assert answer.ok and answer.conversation_id == "5118-1"


def test_register_already_registered_and_other_refusals() -> None:
    error = DarajaError("500.003.1001", "Urls are already registered")
    assert read_registration(500, {}, error).already_registered
    legacy = DarajaError(
        "500.003.1001", "Duplicate notification info, SP ID is 107031, correlator is x"
    )
    assert read_registration(500, {}, legacy).already_registered
    other = read_registration(
        400, {}, DarajaError("400.002.02", "Bad Request - Invalid ValidationURL")
    )
    assert not other.ok and not other.already_registered and other.code == "400.002.02"
    assert not read_registration(200, {"ResponseCode": "1", "ResponseDescription": "x"}, None).ok
    assert not read_registration(502, None, None).ok


async def test_client_reads_already_registered() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/v1/generate":
            return httpx.Response(200, json={"access_token": "T" * 28, "expires_in": "3599"})
        assert request.url.path == "/mpesa/c2b/v2/registerurl"
        return httpx.Response(
            500,
            json={
                "requestId": "1",
                "errorCode": "500.003.1001",
                "errorMessage": "Urls are already registered",
            },
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = MpesaClient(
            account_key="a",
            base_url="https://daraja.test",
            credentials=MpesaCredentials("ck", "cs", "600000", "paybill", "pk"),
            http=http,
            tokens=TokenCache(),
        )
        answer = await client.register_c2b_urls(
            response_type="Completed",
            confirmation_url="https://pay.example/callbacks/t/c2b-confirm",
            validation_url="https://pay.example/callbacks/t/c2b-validate",
        )
    assert not answer.ok and answer.already_registered


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://pay.example.com/callbacks/abcDEF/c2b-confirm", []),
        ("https://mpesa.example.com/x", ["mpesa"]),
        ("https://pay.example.com/M-PESA/x", ["m-pesa"]),
        ("https://pay.example.com/callbacks/xxExEcyy/c2b-validate", ["exec"]),
        ("https://pay.example.com/callbacks/aSQLb/c2b-validate", ["sql"]),
        ("https://Safaricom.example/QUERY/cmd", ["safaricom", "cmd", "query"]),
    ],
)
def test_forbidden_words(url: str, words: list[str]) -> None:
    assert forbidden_words(url) == words


# ----- validation / confirmation bodies ----------------------------------------------------------
def test_notice_keeps_strings_as_given() -> None:
    notice = parse_notice(
        {
            "TransactionType": "Pay Bill",
            "TransID": "RKTQDM7W6S",
            "TransTime": "20191122063845",
            "TransAmount": "10.00",
            "BusinessShortCode": "600638",
            "BillRefNumber": "invoice008",
            "InvoiceNumber": "",
            "OrgAccountBalance": "",
            "ThirdPartyTransID": "",
            "MSISDN": "2547 ***** 126",
            "FirstName": "John",
            "MiddleName": "",
            "LastName": "Doe",
        }
    )
    assert notice is not None
    assert notice.amount == Decimal("10.00") and notice.msisdn == "2547 ***** 126"
    assert notice.payer_name == "John Doe" and notice.bill_ref == "invoice008"


@pytest.mark.parametrize("body", [None, [], {"TransAmount": "1"}, {"TransID": ""}, "x"])
def test_not_a_notice(body: Any) -> None:
    assert parse_notice(body) is None


@pytest.mark.parametrize("amount", ["", "abc", "-1", "0", "NaN", "Infinity"])
def test_unusable_amounts(amount: str) -> None:
    notice = parse_notice({"TransID": "X1", "TransAmount": amount})
    assert notice is not None and notice.amount is None


# ----- account balance ---------------------------------------------------------------------------
OFFICIAL = (
    "Working Account|KES|700000.00|700000.00|0.00|0.00&Utility Account|KES|228037.00|228037.00"
    "|0.00|0.00&Charges Paid Account|KES|-1540.00|-1540.00|0.00|0.00&Merchant Account|KES|0.00"
    "|0.00|0.00|0.00"
)


def test_balance_text_of_the_official_sample() -> None:
    lines = parse_balance_text(OFFICIAL)
    assert [line.account for line in lines] == [
        "Working Account",
        "Utility Account",
        "Charges Paid Account",
        "Merchant Account",
    ]
    assert lines[1].available == Decimal("228037.00") and lines[1].currency == "KES"
    assert lines[2].available == Decimal("-1540.00") and len(lines[2].amounts) == 4


def test_balance_text_skips_garbage() -> None:
    assert parse_balance_text("") == []
    assert parse_balance_text("Working Account|KES|x&|KES|1&Utility|KES|5") == [
        parse_balance_text("Utility|KES|5")[0]
    ]


def test_balance_result_envelope_with_string_codes() -> None:
    envelope = parse_result(
        {
            "Result": {
                "ResultType": "0",
                "ResultCode": "0",
                "ResultDesc": "The service request is processed successfully.",
                "OriginatorConversationID": "16917-22577599-3",
                "ConversationID": "AG_20200206_00005e091a8ec6b9eac5",
                "TransactionID": "OA90000000",
                "ResultParameters": {
                    "ResultParameter": [
                        {"Key": "AccountBalance", "Value": OFFICIAL},
                        {"Key": "BOCompletedTime", "Value": 20200109125710},
                    ]
                },
            }
        }
    )
    assert envelope is not None
    result = read_balance_result(envelope)
    assert result.ok and result.conversation_id == "AG_20200206_00005e091a8ec6b9eac5"
    failed = parse_result({"Result": {"ResultType": 0, "ResultCode": 2001, "ResultDesc": "bad"}})
    assert failed is not None and not read_balance_result(failed).ok


# ----- MoMo account holder -----------------------------------------------------------------------
def test_momo_account_answers() -> None:
    assert account.read_active({"result": True}) is True
    assert account.read_active({"result": "true"}) is None
    assert account.read_holder_name({"given_name": "Sand", "family_name": "Box"}) == "Sand Box"
    assert account.read_holder_name({"name": " Jean  Uwimana "}) == "Jean Uwimana"
    assert account.read_holder_name({}) is None
    balance = account.read_balance("collection", {"availableBalance": 1000, "currency": "eur"})
    assert balance == account.MomoBalance("collection", Decimal(1000), "EUR")
    assert account.read_balance("collection", {"availableBalance": "x", "currency": "EUR"}) is None


# ----- the merchant's rules ----------------------------------------------------------------------
def decide(r: rules.C2bRules, amount: str | None, ref: str = "A1", **kw: Any) -> str:
    return rules.decide(
        r,
        amount=Decimal(amount) if amount else None,
        bill_ref=ref,
        has_account_number=kw.get("has_account", True),
        matches_open_order=kw.get("open_order", False),
    ).code


def test_rules_decide() -> None:
    default = rules.parse_rules(None)
    assert decide(default, "10") == "0"
    assert decide(default, None) == "C2B00013"
    strict = rules.parse_rules(
        {"accept_unknown_accounts": False, "account_pattern": r"^A\d$", "min_amount": "5"}
    )
    assert decide(strict, "10", "A1") == "0"
    assert decide(strict, "10", "A12") == "C2B00012"
    assert decide(strict, "10", "ZZ", open_order=True) == "0"
    assert decide(strict, "4", "ZZ", open_order=True) == "C2B00013"  # limits first
    assert decide(strict, "10", "", has_account=False) == "0"  # buy goods


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"bogus": 1},
        {"accept_unknown_accounts": "no"},
        {"account_pattern": "("},
        {"min_amount": "abc"},
        {"min_amount": "10", "max_amount": "1"},
        {"max_amount": 1.5},
    ],
)
def test_bad_rules(raw: Any) -> None:
    with pytest.raises(DomainError):
        rules.parse_rules(raw)
