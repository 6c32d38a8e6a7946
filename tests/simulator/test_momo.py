"""MoMo simulator, request/response: what a client of the real Open API relies on."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.simulator.conftest import MoMoKit

APIM_KEY_ERROR = {
    "statusCode": 401,
    "message": "Access denied due to invalid subscription key. "
    "Make sure to provide a valid key for an active subscription.",
}
RTP = "/collection/v1_0/requesttopay"


def magic(n: int) -> str:
    return f"467331234{n}"


# ----- provisioning -------------------------------------------------------------------------
async def test_provisioning_lifecycle(momo: MoMoKit) -> None:
    key = {"Ocp-Apim-Subscription-Key": momo.key("disbursement")}  # any product's key works
    user = str(uuid.uuid4())
    created = await momo.client.post(
        "/v1_0/apiuser", headers={**key, "X-Reference-Id": user},
        json={"providerCallbackHost": "example.com"},
    )
    assert (created.status_code, created.content) == (201, b"")

    again = await momo.client.post(
        "/v1_0/apiuser", headers={**key, "X-Reference-Id": user},
        json={"providerCallbackHost": "example.com"},
    )
    assert again.status_code == 409
    assert again.json() == {"code": "RESOURCE_ALREADY_EXIST",
                            "message": "Duplicated reference id. Creation of resource failed."}

    fetched = await momo.client.get(f"/v1_0/apiuser/{user}", headers=key)
    assert fetched.json() == {"providerCallbackHost": "example.com",
                              "targetEnvironment": "sandbox"}

    first = await momo.client.post(f"/v1_0/apiuser/{user}/apikey", headers=key)
    assert first.status_code == 201
    api_key = first.json()["apiKey"]
    assert len(api_key) == 32 and int(api_key, 16) >= 0

    token_headers = {"Authorization": momo.basic(user, api_key),
                     "Ocp-Apim-Subscription-Key": momo.key("collection")}
    assert (await momo.client.post("/collection/token/", headers=token_headers)).status_code == 200

    # A new key replaces the old one (keys cannot be fetched again, so a lost key is replaced).
    second = (await momo.client.post(f"/v1_0/apiuser/{user}/apikey", headers=key)).json()
    assert second["apiKey"] != api_key
    stale = await momo.client.post("/collection/token/", headers=token_headers)
    assert (stale.status_code, stale.json()) == (401, {"error": "login_failed"})


async def test_provisioning_errors(momo: MoMoKit) -> None:
    key = {"Ocp-Apim-Subscription-Key": momo.key("collection")}
    body = {"providerCallbackHost": "example.com"}
    no_key = await momo.client.post("/v1_0/apiuser", headers={"X-Reference-Id": str(uuid.uuid4())},
                                    json=body)
    assert (no_key.status_code, no_key.json()) == (401, APIM_KEY_ERROR)
    uuid1 = await momo.client.post("/v1_0/apiuser", headers={**key, "X-Reference-Id":
                                                             str(uuid.uuid1())}, json=body)
    assert (uuid1.status_code, uuid1.content) == (400, b"")
    no_host = await momo.client.post("/v1_0/apiuser", headers={**key, "X-Reference-Id":
                                                               str(uuid.uuid4())}, json={})
    assert no_host.status_code == 400
    missing = await momo.client.get(f"/v1_0/apiuser/{uuid.uuid4()}", headers=key)
    assert missing.status_code == 404
    assert missing.json() == {"code": "RESOURCE_NOT_FOUND",
                              "message": "Requested resource was not found."}
    assert (await momo.client.get("/v1_0/apiuser/not-a-uuid", headers=key)).status_code == 400
    assert (await momo.client.post(f"/v1_0/apiuser/{uuid.uuid4()}/apikey",
                                   headers=key)).status_code == 404


async def test_provisioned_user_is_sandbox_only(momo: MoMoKit) -> None:
    key = {"Ocp-Apim-Subscription-Key": momo.key("collection")}
    user = str(uuid.uuid4())
    await momo.client.post("/v1_0/apiuser", headers={**key, "X-Reference-Id": user},
                           json={"providerCallbackHost": "example.com"})
    api_key = (await momo.client.post(f"/v1_0/apiuser/{user}/apikey", headers=key)).json()
    token = (await momo.client.post("/collection/token/", headers={
        **key, "Authorization": momo.basic(user, api_key["apiKey"])})).json()["access_token"]
    headers = {**key, "Authorization": f"Bearer {token}"}
    sandbox = await momo.client.get("/collection/v1_0/account/balance",
                                    headers={**headers, "X-Target-Environment": "sandbox"})
    assert sandbox.status_code == 200
    market = await momo.client.get("/collection/v1_0/account/balance",
                                   headers={**headers, "X-Target-Environment": "mtnrwanda"})
    assert market.status_code == 500
    assert market.json()["code"] == "NOT_ALLOWED_TARGET_ENVIRONMENT"


# ----- tokens -------------------------------------------------------------------------------
@pytest.mark.parametrize("product", ["collection", "disbursement", "remittance"])
@pytest.mark.parametrize("path", ["/{p}/token/", "/{p}/token"])
async def test_token_per_product(momo: MoMoKit, product: str, path: str) -> None:
    response = await momo.client.post(path.format(p=product), headers={
        "Authorization": momo.basic(), "Ocp-Apim-Subscription-Key": momo.key(product)})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "access_token"  # the literal, not "Bearer"
    assert body["expires_in"] == 3600
    assert len(body["access_token"].split(".")) == 3  # JWT-looking


async def test_token_errors(momo: MoMoKit) -> None:
    wrong_product = await momo.client.post("/disbursement/token/", headers={
        "Authorization": momo.basic(), "Ocp-Apim-Subscription-Key": momo.key("collection")})
    assert (wrong_product.status_code, wrong_product.json()) == (401, APIM_KEY_ERROR)
    for auth in (momo.basic(key="0" * 32), momo.basic(user=str(uuid.uuid4())), "Basic !!!", ""):
        bad = await momo.client.post("/collection/token/", headers={
            "Authorization": auth, "Ocp-Apim-Subscription-Key": momo.key("collection")})
        assert (bad.status_code, bad.json()) == (401, {"error": "login_failed"})
    # The query-parameter form of the subscription key is accepted too.
    query = await momo.client.post(f"/collection/token/?subscription-key={momo.key('collection')}",
                                   headers={"Authorization": momo.basic()})
    assert query.status_code == 200


async def test_bearer_checks(momo: MoMoKit) -> None:
    balance = "/disbursement/v1_0/account/balance"
    headers = await momo.headers("disbursement")
    assert (await momo.client.get(balance, headers=headers)).status_code == 200
    collection_token = await momo.token("collection")
    for auth in (f"Bearer {collection_token}", "Bearer nonsense", ""):
        response = await momo.client.get(balance, headers={**headers, "Authorization": auth})
        assert response.status_code == 401
        assert response.json()["statusCode"] == 401
    momo.sim.expire_tokens("momo")
    expired = await momo.client.get(balance, headers=headers)
    assert expired.status_code == 401


# ----- request to pay -----------------------------------------------------------------------
async def test_request_to_pay_accepted_then_paid(momo: MoMoKit) -> None:
    ref, response = await momo.create("requesttopay", amount="1500")
    assert (response.status_code, response.content) == (202, b"")
    pending = (await momo.status("requesttopay", ref)).json()
    assert pending["status"] == "PENDING"
    assert "financialTransactionId" not in pending and "reason" not in pending

    done = await momo.settled("requesttopay", ref)
    assert done["status"] == "SUCCESSFUL"
    assert done["financialTransactionId"].isdigit()
    assert done == {
        "financialTransactionId": done["financialTransactionId"],
        "externalId": "ext-1", "amount": "1500", "currency": "EUR",
        "payer": {"partyIdType": "MSISDN", "partyId": "256772123456"},
        "payerMessage": "Order 42", "payeeNote": "Thanks", "status": "SUCCESSFUL",
    }


async def test_request_to_pay_sync_errors(momo: MoMoKit) -> None:
    ref, first = await momo.create("requesttopay")
    assert first.status_code == 202
    _, dup = await momo.create("requesttopay", ref=ref)
    assert dup.status_code == 409 and dup.json()["code"] == "RESOURCE_ALREADY_EXIST"

    _, currency = await momo.create("requesttopay", currency="UGX")
    assert currency.status_code == 500
    assert currency.json() == {"code": "INVALID_CURRENCY", "message": "Currency not supported."}

    _, env = await momo.create("requesttopay", env="mtnkenya")
    assert env.status_code == 500
    assert env.json() == {"code": "NOT_ALLOWED_TARGET_ENVIRONMENT",
                          "message": "Access to target environment is forbidden."}

    _, host = await momo.create("requesttopay", callback="https://evil.example/cb")
    assert host.status_code == 500 and host.json()["code"] == "INVALID_CALLBACK_URL_HOST"


async def test_a_request_created_despite_its_500_exists_and_is_taken_once(momo: MoMoKit) -> None:
    """MTN's INTERNAL_PROCESSING_ERROR on a creating call does not say nothing was created:
    the GET finds it, and a retry under the same reference is 409."""
    momo.sim.faults.update({"created_error_pct": 100})
    ref, first = await momo.create("requesttopay", amount="1500")
    assert first.status_code == 500 and first.json()["code"] == "INTERNAL_PROCESSING_ERROR"
    assert (await momo.status("requesttopay", ref)).json()["status"] == "PENDING"
    _, again = await momo.create("requesttopay", ref=ref, amount="1500")
    assert again.status_code == 409 and again.json()["code"] == "RESOURCE_ALREADY_EXIST"


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("ref", "not-a-uuid"),
        ("ref", str(uuid.uuid1())),
        ("callback", ""),
        ("callback", "not a url"),
        ("payerMessage", "Don't"),
        ("payeeNote", "x" * 161),
        ("amount", 100),
        ("amount", "abc"),
        ("amount", "-5"),
        ("amount", "0"),
        ("currency", "eur"),
        ("payer", {"partyIdType": "PHONE", "partyId": "256772123456"}),
        ("payer", {"partyIdType": "MSISDN", "partyId": "+256772123456"}),
        ("payer", {"partyIdType": "PARTY_CODE", "partyId": "abc"}),
        ("payer", None),
    ],
)
async def test_request_to_pay_bad_request(momo: MoMoKit, change: str, value: Any) -> None:
    headers = await momo.headers("collection", ref=str(uuid.uuid4()))
    body = momo.body("payer")
    if change == "ref":
        headers["X-Reference-Id"] = value
    elif change == "callback":
        headers["X-Callback-Url"] = value
    elif value is None:
        del body[change]
    else:
        body[change] = value
    response = await momo.client.post(RTP, headers=headers, json=body)
    assert (response.status_code, response.content) == (400, b"")
    assert response.headers["X-Lipwa-Sim-Reason"]
    assert momo.sim.transactions.get("momo", {}) == {}


async def test_request_to_pay_markets(momo: MoMoKit) -> None:
    """The demo user may use every market, each with its own currency and the same table."""
    for env, currency, party in [("mtnrwanda", "RWF", "250781234567"),
                                 ("mtnuganda", "UGX", "256772123456"),
                                 ("mtnuganda", "UGX", magic(51))]:
        ref, response = await momo.create("requesttopay", party, currency=currency, env=env)
        assert response.status_code == 202
        done = await momo.settled("requesttopay", ref, env)
        expected = "FAILED" if party == magic(51) else "SUCCESSFUL"
        assert (done["status"], done["currency"]) == (expected, currency)
    _, wrong = await momo.create("requesttopay", currency="EUR", env="mtnrwanda")
    assert wrong.json()["code"] == "INVALID_CURRENCY"


async def test_status_lookup_errors(momo: MoMoKit) -> None:
    assert (await momo.status("requesttopay", str(uuid.uuid4()))).status_code == 404
    assert (await momo.status("requesttopay", "123")).status_code == 400
    ref, _ = await momo.create("requesttopay")
    # A reference is bound to its operation: a request-to-pay is no transfer.
    assert (await momo.status("transfer", ref)).status_code == 404
    assert (await momo.status("requesttopay", ref.upper())).status_code == 200


# Sandbox use cases (facts sheet 7.2/7.3), written out here rather than imported.
RTP_TABLE = {
    50: ("FAILED", "INTERNAL_PROCESSING_ERROR"), 51: ("FAILED", "APPROVAL_REJECTED"),
    52: ("FAILED", "EXPIRED"), 53: ("PENDING", None), 54: ("SUCCESSFUL", None),
    55: ("FAILED", "PAYER_NOT_FOUND"), 56: ("FAILED", "PAYEE_NOT_ALLOWED_TO_RECEIVE"),
    57: ("FAILED", "NOT_ALLOWED"), 58: ("FAILED", "NOT_ALLOWED_TARGET_ENVIRONMENT"),
    59: ("FAILED", "INVALID_CALLBACK_URL_HOST"), 60: ("FAILED", "INVALID_CURRENCY"),
    61: ("FAILED", "INTERNAL_PROCESSING_ERROR"), 62: ("FAILED", "SERVICE_UNAVAILABLE"),
    63: ("FAILED", "COULD_NOT_PERFORM_TRANSACTION"), 64: ("SUCCESSFUL", None),
}
TRANSFER_TABLE = {
    **{n: RTP_TABLE[n] for n in range(50, 55)},
    55: ("FAILED", "NOT_ENOUGH_FUNDS"), 56: ("FAILED", "PAYER_LIMIT_REACHED"),
    57: ("FAILED", "PAYEE_NOT_FOUND"), 58: ("FAILED", "NOT_ALLOWED"),
    59: ("FAILED", "NOT_ALLOWED_TARGET_ENVIRONMENT"), 60: ("FAILED", "INVALID_CALLBACK_URL_HOST"),
    61: ("FAILED", "INVALID_CURRENCY"), 62: ("FAILED", "INTERNAL_PROCESSING_ERROR"),
    63: ("FAILED", "SERVICE_UNAVAILABLE"), 64: ("SUCCESSFUL", None),
}


@pytest.mark.parametrize(("op", "table"), [("requesttopay", RTP_TABLE),
                                           ("deposit", RTP_TABLE),
                                           ("transfer", TRANSFER_TABLE)])
async def test_sandbox_magic_numbers(momo: MoMoKit, op: str, table: dict[int, Any]) -> None:
    refs = {}
    for n in sorted(table, key=lambda n: n == 54):  # Delayed last: it must outlive the rest
        ref, response = await momo.create(op, magic(n))
        assert response.status_code == 202  # outcomes are asynchronous, the POST is accepted
        refs[n] = ref
    records = momo.sim.transactions["momo"]
    others = [refs[n] for n in table if n not in (53, 54)]
    while any(records[ref]["status"] == "PENDING" for ref in others):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    delayed = (await momo.status(op, refs[54])).json()
    assert delayed["status"] == "PENDING"  # the rest are final, Delayed still waits
    await momo.sim.drain()
    for n, (status, reason) in table.items():
        body = (await momo.status(op, refs[n])).json()
        assert body["status"] == status, n
        assert body.get("reason") == reason, n  # a bare string, sandbox style
        assert ("financialTransactionId" in body) == (status == "SUCCESSFUL"), n


async def test_overrides_win_over_table(momo: MoMoKit) -> None:
    ref = str(uuid.uuid4())
    momo.sim.overrides[("momo", "reference", ref)] = "not_enough_funds"
    momo.sim.overrides[("momo", "phone", "250780000001")] = "rejected"
    await momo.create("requesttopay", ref=ref)
    by_phone, _ = await momo.create("requesttopay", "250780000001")
    by_magic, _ = await momo.create("requesttopay", magic(50))
    momo.sim.overrides[("momo", "phone", magic(50))] = "success"
    magic_overridden, _ = await momo.create("requesttopay", magic(50))
    assert (await momo.settled("requesttopay", ref))["reason"] == "NOT_ENOUGH_FUNDS"
    assert (await momo.settled("requesttopay", by_phone))["reason"] == "APPROVAL_REJECTED"
    assert (await momo.settled("requesttopay", by_magic))["status"] == "FAILED"
    assert (await momo.settled("requesttopay", magic_overridden))["status"] == "SUCCESSFUL"
    assert {"success", "failed", "rejected", "expired", "ongoing", "delayed", "payer_not_found",
            "not_enough_funds", "internal_processing_error", "no_callback"} <= momo.momo.outcomes()


async def test_a_failure_reason_in_the_specs_object_form(momo: MoMoKit) -> None:
    momo.sim.settings.update({"momo_reason_form": "object"})
    ref, _ = await momo.create("requesttopay", magic(51))
    done = await momo.settled("requesttopay", ref)
    assert done["status"] == "FAILED"
    assert done["reason"]["code"] == "APPROVAL_REJECTED" and done["reason"]["message"]
    with pytest.raises(ValueError, match="string or object"):
        momo.sim.settings.update({"prompt_seconds": 9, "momo_reason_form": "xml"})
    # A refused update changes nothing at all.
    assert momo.sim.settings.momo_reason_form == "object"
    assert momo.sim.settings.prompt_seconds != 9


async def test_transaction_record(momo: MoMoKit) -> None:
    ref, _ = await momo.create("transfer", "250781234567", amount="2500", currency="RWF",
                               env="mtnrwanda")
    await momo.sim.drain()
    record = momo.sim.transactions["momo"][ref]
    assert record["operation"] == "transfer"
    assert record["status"] == "SUCCESSFUL" and record["reason"] is None
    assert record["financial_transaction_id"].isdigit()
    assert (record["amount"], record["currency"]) == ("2500", "RWF")
    assert record["party"] == {"partyIdType": "MSISDN", "partyId": "250781234567"}
    assert record["external_id"] == "ext-1" and record["target_environment"] == "mtnrwanda"
    assert record["completed_at"] >= record["created_at"] and record["callback_url"] is None


# ----- money --------------------------------------------------------------------------------
async def balance(momo: MoMoKit, product: str, env: str = "sandbox",
                  currency: str = "") -> dict[str, Any]:
    suffix = f"/{currency}" if currency else ""
    response = await momo.client.get(f"/{product}/v1_0/account/balance{suffix}",
                                     headers=await momo.headers(product, env))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_balances_move(momo: MoMoKit) -> None:
    start_c = await balance(momo, "collection")
    start_d = await balance(momo, "disbursement", currency="EUR")
    assert isinstance(start_c["availableBalance"], str) and start_c["currency"] == "EUR"
    await momo.create("requesttopay", amount="10.50")
    await momo.create("requesttopay", magic(51), amount="99")  # fails: moves nothing
    await momo.create("transfer", amount="4")
    await momo.sim.drain()
    after_c = await balance(momo, "collection")
    after_d = await balance(momo, "disbursement")
    assert float(after_c["availableBalance"]) == float(start_c["availableBalance"]) + 10.5
    assert float(after_d["availableBalance"]) == float(start_d["availableBalance"]) - 4
    rw = await balance(momo, "disbursement", env="mtnrwanda")
    assert rw["currency"] == "RWF"
    other = await momo.client.get("/collection/v1_0/account/balance/UGX",
                                  headers=await momo.headers("collection"))
    assert (other.status_code, other.json()["code"]) == (500, "INVALID_CURRENCY")


async def test_transfer_beyond_float_is_not_enough_funds(momo: MoMoKit) -> None:
    start = await balance(momo, "disbursement")
    too_much = str(int(float(start["availableBalance"])) + 1)
    ref, response = await momo.create("transfer", amount=too_much)
    assert response.status_code == 202
    done = await momo.settled("transfer", ref)
    assert (done["status"], done["reason"]) == ("FAILED", "NOT_ENOUGH_FUNDS")
    assert await balance(momo, "disbursement") == start


async def test_refunds(momo: MoMoKit) -> None:
    paid, _ = await momo.create("requesttopay", "256770000001", amount="100")
    unpaid, _ = await momo.create("requesttopay", magic(51), amount="100")
    await momo.sim.drain()
    start = await balance(momo, "disbursement")

    part, response = await momo.create("refund", amount="60", referenceIdToRefund=paid)
    assert response.status_code == 202
    done = await momo.settled("refund", part)
    assert done["status"] == "SUCCESSFUL"
    assert done["payee"] == {"partyIdType": "MSISDN", "partyId": "256770000001"}
    after = await balance(momo, "disbursement")
    assert float(after["availableBalance"]) == float(start["availableBalance"]) - 60

    cases = [("50", paid, "NOT_ALLOWED"),  # more than what is left (40)
             ("40", unpaid, "NOT_ALLOWED"),  # the original never succeeded
             ("40", str(uuid.uuid4()), "RESOURCE_NOT_FOUND")]
    for amount, original, reason in cases:
        ref, _ = await momo.create("refund", amount=amount, referenceIdToRefund=original)
        assert (await momo.settled("refund", ref))["reason"] == reason
    rest, _ = await momo.create("refund", amount="40", referenceIdToRefund=paid)
    assert (await momo.settled("refund", rest))["status"] == "SUCCESSFUL"

    # Refund magic values ride in externalId; v2_0 is the same operation.
    magic_ref = str(uuid.uuid4())
    response = await momo.client.post(
        "/disbursement/v2_0/refund",
        headers=await momo.headers("disbursement", ref=magic_ref),
        json=momo.body(None, externalId="3", referenceIdToRefund=paid),
    )
    assert response.status_code == 202
    assert (await momo.settled("refund", magic_ref))["reason"] == "APPROVAL_REJECTED"
    _, missing = await momo.create("refund", amount="1")  # no referenceIdToRefund
    assert missing.status_code == 400


async def test_deposit_v2_and_status(momo: MoMoKit) -> None:
    ref = str(uuid.uuid4())
    response = await momo.client.post(
        "/disbursement/v2_0/deposit", headers=await momo.headers("disbursement", ref=ref),
        json=momo.body("payee"))
    assert response.status_code == 202
    assert (await momo.settled("deposit", ref))["status"] == "SUCCESSFUL"


@pytest.mark.parametrize("version", ["v1_0", "v2_0"])
async def test_request_to_withdraw_is_served_like_request_to_pay(
    momo: MoMoKit, version: str
) -> None:
    """momo.md 4.5: same body as requesttopay (payer), 202, the same result shape, read at
    v1_0 whichever version made it; a cash-out fills the collection account."""
    start = await balance(momo, "collection")
    ref = str(uuid.uuid4())
    response = await momo.client.post(
        f"/collection/{version}/requesttowithdraw",
        headers=await momo.headers("collection", ref=ref), json=momo.body("payer"))
    assert (response.status_code, response.content) == (202, b"")
    done = await momo.settled("requesttowithdraw", ref)
    assert done["status"] == "SUCCESSFUL" and done["financialTransactionId"].isdigit()
    assert done["payer"] == {"partyIdType": "MSISDN", "partyId": "256772123456"}
    after = await balance(momo, "collection")
    assert Decimal(after["availableBalance"]) == Decimal(start["availableBalance"]) + Decimal(
        done["amount"]
    )
    # a request-to-pay reference is not a withdrawal (and the other way round)
    other = await momo.client.get(f"/collection/v1_0/requesttopay/{ref}",
                                  headers=await momo.headers("collection"))
    assert other.status_code == 404


# ----- account holders, user info, delivery notification ------------------------------------
HOLDERS = [
    ("msisdn", magic(50), False), ("msisdn", magic(51), False),
    ("msisdn", magic(52), (500, "NOT_ALLOWED")),
    ("msisdn", magic(53), (500, "NOT_ALLOWED_TARGET_ENVIRONMENT")),
    ("msisdn", magic(54), (500, "INTERNAL_PROCESSING_ERROR")),
    ("msisdn", magic(55), (503, "SERVICE_UNAVAILABLE")),
    ("msisdn", "256772123456", True),
    ("email", "notfound@email.com", False), ("email", "notactive@email.com", False),
    ("email", "notallowed@email.com", (500, "NOT_ALLOWED")),
    ("email", "notallowedtargetenvironment@email.com", (500, "NOT_ALLOWED_TARGET_ENVIRONMENT")),
    ("email", "internalprocessingerror@email.com", (500, "INTERNAL_PROCESSING_ERROR")),
    ("email", "serviceunavailable@email.com", (503, "SERVICE_UNAVAILABLE")),
    ("email", "someone@example.com", True),
    ("party_code", "5cecb5a7-8bd0-4f49-87b1-8eb9ecc7b7bc", False),
    ("party_code", "b0040b3c-b426-4a90-af6e-673e65861cd7", False),
    ("party_code", "4d5f500f-c385-4901-9be5-25b6d36ad220", (500, "NOT_ALLOWED")),
    ("party_code", "d2265f9b-0c22-496d-908f-79a65ad66266", (500, "NOT_ALLOWED_TARGET_ENVIRONMENT")),
    ("party_code", "8f548a78-ceb8-4d12-a243-5640b91e91a4", (500, "INTERNAL_PROCESSING_ERROR")),
    ("party_code", "585c07a4-2c80-42f7-9e73-e586b36dee68", (503, "SERVICE_UNAVAILABLE")),
]


@pytest.mark.parametrize("product", ["collection", "disbursement"])
async def test_account_holder_active(momo: MoMoKit, product: str) -> None:
    headers = await momo.headers(product)
    for kind, holder, expected in HOLDERS:
        response = await momo.client.get(f"/{product}/v1_0/accountholder/{kind}/{holder}/active",
                                          headers=headers)
        if isinstance(expected, tuple):
            assert (response.status_code, response.json()["code"]) == expected, holder
        else:
            assert (response.status_code, response.json()) == (200, {"result": expected}), holder
    upper = await momo.client.get(f"/{product}/v1_0/accountholder/MSISDN/256772123456/active",
                                  headers=headers)
    assert upper.status_code == 400  # the type is lower-case in paths


async def test_basic_user_info(momo: MoMoKit) -> None:
    for product in ("collection", "disbursement"):
        response = await momo.client.get(
            f"/{product}/v1_0/accountholder/msisdn/256772123456/basicuserinfo",
            headers=await momo.headers(product))
        assert response.status_code == 200
        assert response.json()["name"] == "Sand Box"
        assert response.json()["family_name"] == "Box"


async def test_delivery_notification(momo: MoMoKit) -> None:
    ref, _ = await momo.create("requesttopay")
    path = f"{RTP}/{ref}/deliverynotification"
    headers = await momo.headers("collection")
    by_header = await momo.client.post(path, headers={**headers, "notificationMessage": "Paid"})
    assert (by_header.status_code, by_header.content) == (200, b"")
    by_body = await momo.client.post(path, headers=headers, json={"notificationMessage": "Hi"})
    assert by_body.status_code == 200
    notes = momo.sim.transactions["momo"][ref]["notifications"]
    assert [n["message"] for n in notes] == ["Paid", "Hi"]
    assert (await momo.client.post(path, headers=headers)).status_code == 400
    unknown = await momo.client.post(f"{RTP}/{uuid.uuid4()}/deliverynotification",
                                     headers={**headers, "notificationMessage": "x"})
    assert unknown.status_code == 404


# ----- statement, faults, plumbing ----------------------------------------------------------
async def test_statement_csv(momo: MoMoKit) -> None:
    paid, _ = await momo.create("requesttopay", "256770000009", amount="25")
    sent, _ = await momo.create("transfer", "256770000008", amount="7")
    await momo.sim.drain()
    rows = list(csv.DictReader(io.StringIO(momo.momo.statement_csv(None))))
    assert list(rows[0]) == ["Id", "External Transaction Id", "Date", "Status", "Type",
                             "Provider Category", "Information", "Note Message", "From",
                             "From Name", "To", "To Name", "Initiated By", "On Behalf Of",
                             "Amount", "Currency", "Fee", "Balance"]
    records = momo.sim.transactions["momo"]
    by_id = {row["Id"]: row for row in rows}
    payment = by_id[records[paid]["financial_transaction_id"]]
    transfer = by_id[records[sent]["financial_transaction_id"]]
    assert (payment["Type"], payment["Amount"], payment["From"]) == ("PAYMENT", "25",
                                                                      "256770000009")
    assert (transfer["Type"], transfer["Amount"], transfer["To"]) == ("TRANSFER", "-7",
                                                                       "256770000008")
    assert payment["Status"] == "SUCCESSFUL" and payment["Currency"] == "EUR"
    only = list(csv.DictReader(io.StringIO(momo.momo.statement_csv("disbursement"))))
    assert [row["Id"] for row in only] == [transfer["Id"]]


async def test_injected_errors_create_nothing(momo: MoMoKit) -> None:
    await momo.token("collection")  # before the faults
    momo.sim.faults.error_pct = 100
    seen = set()
    ref = str(uuid.uuid4())
    for _ in range(12):
        _, response = await momo.create("requesttopay", ref=ref)
        seen.add(response.status_code)
        expected = {503: "SERVICE_UNAVAILABLE", 500: "INTERNAL_PROCESSING_ERROR"}
        assert response.json()["code"] == expected[response.status_code]
    assert seen == {500, 503}  # both transient shapes occur
    assert ref not in momo.sim.transactions.get("momo", {})
    momo.sim.faults.error_pct = 0
    _, retry = await momo.create("requesttopay", ref=ref)  # the retry with the same id works
    assert retry.status_code == 202


async def test_latency_fault(momo: MoMoKit) -> None:
    headers = await momo.headers("collection")
    momo.sim.faults.latency_ms = 150
    started = time.monotonic()
    response = await momo.client.get("/collection/v1_0/account/balance", headers=headers)
    assert response.status_code == 200 and time.monotonic() - started >= 0.15


async def test_requests_are_recorded(momo: MoMoKit) -> None:
    ref, _ = await momo.create("requesttopay")
    logged = [r for r in momo.sim.requests if r["provider"] == "momo" and r["path"] == RTP]
    assert logged and logged[-1]["method"] == "POST"
    assert logged[-1]["headers"]["x-reference-id"] == ref
    assert logged[-1]["body"]["amount"] == "100"


async def test_wrong_method_and_unknown_path(momo: MoMoKit) -> None:
    headers = await momo.headers("collection")
    wrong = await momo.client.delete(RTP, headers=headers)
    assert wrong.status_code == 405 and set(wrong.json()) == {"code", "message"}
    unknown = await momo.client.get("/collection/v1_0/nothing", headers=headers)
    assert unknown.json() == {"statusCode": 404, "message": "Resource not found"}


async def test_reset_keeps_credentials(momo: MoMoKit) -> None:
    ref, _ = await momo.create("requesttopay", amount="5")
    momo.sim.reset()
    await momo.sim.drain()
    assert momo.sim.transactions.get("momo", {}) == {}
    momo._tokens.clear()
    assert (await balance(momo, "collection"))["availableBalance"] == "0"
    assert (await momo.status("requesttopay", ref)).status_code == 404


async def test_credentials_shape(momo: MoMoKit) -> None:
    creds = momo.creds
    assert uuid.UUID(creds["api_user"]).version == 4
    assert len(creds["api_key"]) == 32
    assert set(creds["subscription_keys"]) >= {"collection", "disbursement"}
    assert (creds["target_environment"], creds["currency"]) == ("sandbox", "EUR")
    markets = {m["target_environment"]: m["currency"] for m in creds["markets"]}
    assert markets["mtnrwanda"] == "RWF" and markets["mtnuganda"] == "UGX"
    assert len(markets) == 14


async def test_inside_the_full_simulator_app(momo_sim: Any, momo_kit_for: Any) -> None:
    """Through app.py: control API credentials, scenario overrides, records and statement."""
    try:
        from lipwa.simulator.app import build_app

        app = build_app(momo_sim)
    except ImportError as exc:  # daraja.py is written concurrently
        pytest.skip(f"full app not importable yet: {exc}")
    async with momo_kit_for(momo_sim, app) as kit:
        client = kit.client
        creds = (await client.get("/_sim/credentials")).json()["momo"]
        assert creds == app.state.momo.credentials()
        scenario = await client.put("/_sim/scenario", json={
            "provider": "momo", "phone": "256770000042", "outcome": "expired"})
        assert scenario.status_code == 200
        unknown = await client.put("/_sim/scenario", json={
            "provider": "momo", "phone": "1", "outcome": "nope"})
        assert unknown.status_code == 400
        ref, response = await kit.create("requesttopay", "256770000042")
        assert response.status_code == 202
        assert (await kit.settled("requesttopay", ref))["reason"] == "EXPIRED"
        paid, _ = await kit.create("requesttopay", amount="3")
        await momo_sim.drain()
        rows = (await client.get("/_sim/transactions?provider=momo")).json()["momo"]
        assert {r["reference_id"] for r in rows} == {ref, paid}
        statement = (await client.get("/_sim/statements/momo.csv")).text
        assert statement.startswith("Id,External Transaction Id,") and statement.count("\n") == 2
