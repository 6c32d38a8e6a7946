"""Collections end to end: the public API, the simulator, callbacks and the database."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from lipwa.simulator.core import Simulator
from tests.gateway.conftest import Merchant, add_till_account


def stk_pushes(sim_url: str) -> list[dict[str, Any]]:
    rows = httpx.get(
        f"{sim_url}/_sim/requests", params={"path": "/mpesa/stkpush/v1/processrequest"}
    ).json()
    return list(rows["requests"])


def sim_record(sim: Simulator, provider: str, ref: str) -> dict[str, Any]:
    return sim.transactions[provider][ref]


# ----- M-Pesa -------------------------------------------------------------------------------
def test_mpesa_payment_succeeds_with_receipt(merchant: Merchant, sim: Simulator) -> None:
    response = merchant.pay(amount="10", currency="KES", phone="0708374149", reference="inv-1")
    assert response.status_code == 201, response.text
    created = response.json()
    # pending, or succeeded already when the callback beat the answer (a loaded machine)
    assert created["status"] in {"pending", "succeeded"}
    assert created["id"].startswith("pay_")
    assert created["amount"] == "10.00"
    assert created["phone"] == "254708374149"
    assert created["provider"] == "mpesa"
    final = merchant.wait_final(created["id"])
    assert final["status"] == "succeeded"
    assert final["resolved_by"] == "callback"
    assert final["receipt"]
    checkout_ids = [
        r for r, t in sim.transactions["mpesa"].items() if t.get("receipt") == final["receipt"]
    ]
    assert len(checkout_ids) == 1


@pytest.mark.parametrize(
    ("last_four", "failure_code", "raw_code"),
    [
        ("1032", "payer_declined", "1032"),
        ("1037", "payer_unreachable", "1037"),
        ("0001", "insufficient_funds", "1"),
        ("2001", "wrong_pin", "2001"),
    ],
)
def test_mpesa_failures_are_normalised(
    merchant: Merchant, sim: Simulator, last_four: str, failure_code: str, raw_code: str
) -> None:
    created = merchant.pay(amount="25", currency="KES", phone=f"+25471234{last_four}").json()
    final = merchant.wait_final(created["id"])
    assert final["status"] == "failed"
    assert final["failure_code"] == failure_code
    assert final["provider_code"] == raw_code
    assert final["receipt"] is None


def test_paybill_sends_paybill_fields(merchant: Merchant, sim_url: str, sim: Simulator) -> None:
    merchant.pay(amount="10", currency="KES", phone="0708374149", reference="shelf-9")
    body = stk_pushes(sim_url)[-1]["body"]
    assert body["TransactionType"] == "CustomerPayBillOnline"
    assert str(body["PartyB"]) == str(body["BusinessShortCode"]) == "174379"
    assert body["AccountReference"] == "shelf-9"
    assert str(body["PartyA"]) == "254708374149"


def test_till_sends_buy_goods_fields(gateway: Any, sim_url: str, sim: Simulator) -> None:
    creds = httpx.get(f"{sim_url}/_sim/credentials").json()["mpesa"]
    with gateway.admin() as admin:
        merchant = admin.post("/admin/v1/merchants", json={"name": "Till shop"}).json()
        add_till_account(gateway, merchant["id"], sim_url)
        key = admin.post(
            f"/admin/v1/merchants/{merchant['id']}/api-keys", json={"mode": "test"}
        ).json()["key"]
    shop = Merchant(merchant["id"], key, {}, gateway)
    created = shop.pay(amount="10", currency="KES", phone="0708374149").json()
    body = stk_pushes(sim_url)[-1]["body"]
    assert body["TransactionType"] == "CustomerBuyGoodsOnline"
    assert str(body["BusinessShortCode"]) == creds["till"]["store_number"]
    assert str(body["PartyB"]) == creds["till"]["till_number"]
    assert shop.wait_final(created["id"])["status"] == "succeeded"


def test_a_merchant_with_a_paybill_and_a_till_chooses_per_payment(
    merchant: Merchant, merchant_factory: Any, gateway: Any, sim_url: str
) -> None:
    creds = httpx.get(f"{sim_url}/_sim/credentials").json()["mpesa"]
    till = add_till_account(gateway, merchant.id, sim_url)
    paybill = merchant.accounts["mpesa"]["id"]
    # Without account_id: the oldest account, the paybill, every time.
    default = merchant.pay(amount="10", currency="KES", phone="0708374149")
    assert default.json()["account_id"] == paybill
    assert stk_pushes(sim_url)[-1]["body"]["TransactionType"] == "CustomerPayBillOnline"
    chosen = merchant.pay(amount="11", currency="KES", phone="0708374149", account_id=till["id"])
    assert chosen.status_code == 201, chosen.text
    assert chosen.json()["account_id"] == till["id"]
    body = stk_pushes(sim_url)[-1]["body"]
    assert (body["TransactionType"], str(body["PartyB"])) == (
        "CustomerBuyGoodsOnline", creds["till"]["till_number"])  # fmt: skip
    # An account that cannot charge this number is refused by name, nothing sent.
    pushes = len(stk_pushes(sim_url))
    other = merchant_factory().accounts["mpesa"]["id"]
    said = set()
    for wrong in (merchant.accounts["momo"]["id"], other, "acct_nope"):
        refused = merchant.pay(amount="12", currency="KES", phone="0708374149", account_id=wrong)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == ("account_not_usable", "account_id")
        said.add(error["message"].replace(wrong, "…"))
    assert len(said) == 1  # another merchant's account reads exactly like none at all
    assert len(stk_pushes(sim_url)) == pushes


def test_long_reference_needs_an_account_reference(merchant: Merchant, sim_url: str) -> None:
    before = len(stk_pushes(sim_url))
    response = merchant.pay(amount="10", currency="KES", phone="0708374149", reference="x" * 20)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "account_reference_too_long"
    assert len(stk_pushes(sim_url)) == before
    ok = merchant.pay(
        amount="10",
        currency="KES",
        phone="0708374149",
        reference="x" * 20,
        account_reference="ORDER20",
        description="A description longer than thirteen",
    )
    assert ok.status_code == 201
    assert ok.json()["provider_reference"] == "ORDER20"
    assert ok.json()["provider_description"] == "A description"[:13]
    assert stk_pushes(sim_url)[-1]["body"]["TransactionDesc"] == ok.json()["provider_description"]


# ----- MoMo ---------------------------------------------------------------------------------
def test_momo_sandbox_payment_succeeds(merchant: Merchant, sim: Simulator) -> None:
    created = merchant.pay(amount="5", currency="EUR", phone="+256772123456").json()
    assert created["provider"] == "momo", created
    final = merchant.wait_final(created["id"])
    assert final["status"] == "succeeded"
    assert final["receipt"]  # financialTransactionId
    records = [
        t for t in sim.transactions["momo"].values() if t.get("external_id") == created["id"]
    ]
    assert len(records) == 1
    assert records[0]["financial_transaction_id"] == final["receipt"]


@pytest.mark.parametrize(
    ("msisdn", "failure_code"),
    [
        ("46733123451", "payer_declined"),
        ("46733123452", "expired"),
        ("46733123455", "payer_not_found"),
        ("46733123450", "provider_error"),
    ],
)
@pytest.mark.parametrize("reason_form", ["string", "object"])
def test_momo_failures_are_normalised(
    merchant: Merchant, sim: Simulator, msisdn: str, failure_code: str, reason_form: str
) -> None:
    """The sandbox sends ``reason`` as a bare string; the spec and some markets send
    ``{"code", "message"}``: both read the same."""
    sim.settings.update({"momo_reason_form": reason_form})
    try:
        created = merchant.pay(amount="5", currency="EUR", phone=f"+{msisdn}").json()
        final = merchant.wait_final(created["id"])
    finally:
        sim.settings.update({"momo_reason_form": "string"})
    assert final["status"] == "failed"
    assert final["failure_code"] == failure_code


def test_momo_rwanda_in_rwf(merchant_factory: Any, sim: Simulator) -> None:
    shop = merchant_factory(momo_currency="RWF")
    created = shop.pay(amount="1500", currency="RWF", phone="0788123456").json()
    assert created["amount"] == "1500"
    assert created["network"] == "mtn_rw"
    assert shop.wait_final(created["id"])["status"] == "succeeded"
    too_small = shop.pay(amount="50", currency="RWF", phone="0788123456")
    assert too_small.status_code == 400
    assert too_small.json()["error"]["code"] == "amount_too_small"


# ----- idempotency ----------------------------------------------------------------------------
def test_same_key_replays_and_other_body_conflicts(merchant: Merchant, sim_url: str) -> None:
    key = str(uuid.uuid4())
    first = merchant.pay(amount="10", currency="KES", phone="0708374149", idempotency_key=key)
    pushes = len(stk_pushes(sim_url))
    again = merchant.pay(amount="10", currency="KES", phone="0708374149", idempotency_key=key)
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = merchant.pay(amount="11", currency="KES", phone="0708374149", idempotency_key=key)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(stk_pushes(sim_url)) == pushes


def test_fifty_concurrent_requests_one_key_make_one_push(merchant: Merchant, sim_url: str) -> None:
    key = str(uuid.uuid4())
    before = len(stk_pushes(sim_url))

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=merchant.gateway.url,
            headers={"Authorization": f"Bearer {merchant.api_key}", "Idempotency-Key": key},
            timeout=60,
        ) as client:
            body = {"amount": "10", "currency": "KES", "phone": "0708374149", "reference": "c1"}
            return await asyncio.gather(
                *(client.post("/v1/payments", json=body) for _ in range(50))
            )

    responses = asyncio.run(fire())
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(stk_pushes(sim_url)) - before == 1


def test_idempotency_key_is_required(merchant: Merchant) -> None:
    with merchant.client() as c:
        response = c.post(
            "/v1/payments",
            json={"amount": "10", "currency": "KES", "phone": "0708374149", "reference": "r"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"


# ----- bad input changes nothing ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"amount": "10", "currency": "KES", "phone": "12345"}, "invalid_phone", "phone"),
        ({"amount": "10.5", "currency": "KES", "phone": "0708374149"}, None, "amount"),
        ({"amount": 10, "currency": "KES", "phone": "0708374149"}, "invalid_amount", "amount"),
        ({"amount": "0", "currency": "KES", "phone": "0708374149"}, None, "amount"),
        (
            {"amount": "300000", "currency": "KES", "phone": "0708374149"},
            "amount_too_large",
            "amount",
        ),
        ({"amount": "10", "currency": "UGX", "phone": "+254708374149"}, None, "currency"),
        (
            {"amount": "10", "currency": "KES", "phone": "0733123456"},
            "unsupported_network",
            "phone",
        ),
        ({"amount": "10", "currency": "KES"}, "parameter_invalid", "phone"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    merchant: Merchant, sim_url: str, body: dict[str, Any], code: str | None, param: str
) -> None:
    before = len(stk_pushes(sim_url))
    response = merchant.pay(**body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) >= {"type", "code", "message", "param"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code:
        assert error["code"] == code
    with merchant.client() as c:
        assert c.get("/v1/payments").json()["data"] == []
    assert len(stk_pushes(sim_url)) == before


def test_unknown_fields_are_refused(merchant: Merchant) -> None:
    response = merchant.pay(amount="10", currency="KES", phone="0708374149", amuont="10")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "amuont"


# ----- reading ----------------------------------------------------------------------------------
def test_list_filters_and_paginates(merchant: Merchant) -> None:
    ids = [
        merchant.pay(amount="10", currency="KES", phone="0708374149", reference=f"r{i}").json()[
            "id"
        ]
        for i in range(5)
    ]
    with merchant.client() as c:
        page1 = c.get("/v1/payments", params={"limit": 2}).json()
        assert [p["id"] for p in page1["data"]] == ids[::-1][:2]
        assert page1["has_more"] is True
        page2 = c.get("/v1/payments", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
        assert [p["id"] for p in page2["data"]] == ids[::-1][2:4]
        by_ref = c.get("/v1/payments", params={"reference": "r3"}).json()["data"]
        assert [p["id"] for p in by_ref] == [ids[3]]
        bad = c.get("/v1/payments", params={"cursor": "nonsense"})
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "cursor"


def test_one_merchant_cannot_read_another(merchant_factory: Any) -> None:
    alice, bob = merchant_factory(), merchant_factory()
    payment = alice.pay(amount="10", currency="KES", phone="0708374149").json()
    with bob.client() as c:
        response = c.get(f"/v1/payments/{payment['id']}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "resource_missing"
        assert c.get("/v1/payments").json()["data"] == []


def test_requests_without_a_valid_key_are_refused(gateway: Any) -> None:
    with httpx.Client(base_url=gateway.url) as c:
        assert c.get("/v1/payments").status_code == 401
        bad = c.get("/v1/payments", headers={"Authorization": "Bearer lw_test_nope"})
        assert bad.status_code == 401
        assert bad.json()["error"]["type"] == "authentication_error"


def test_a_key_whose_request_died_answers_with_its_payment(
    merchant: Merchant, database_url: str, sim_url: str
) -> None:
    """The process died between writing the payment ahead and storing the answer: a retry
    must learn the payment as it stands (never a second charge, never an endless 409)."""
    from tests.gateway.conftest import db_execute

    key = str(uuid.uuid4())
    first = merchant.pay(amount="10", currency="KES", phone="0708374149", idempotency_key=key)
    payment_id = first.json()["id"]
    db_execute(
        database_url,
        "UPDATE idempotency_keys SET state = 'in_progress', response_status = NULL, "
        "response_body = NULL, created_at = :old WHERE key = :key",
        old=datetime.now(UTC) - timedelta(hours=1),
        key=f"test:{key}",
    )
    pushes = len(stk_pushes(sim_url))
    again = merchant.pay(amount="10", currency="KES", phone="0708374149", idempotency_key=key)
    assert again.status_code == 201
    assert again.json()["id"] == payment_id
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(stk_pushes(sim_url)) == pushes


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", '"a\\u0000b"'])
def test_metadata_json_cannot_hold_is_refused_before_anything_is_sent(
    merchant: Merchant, sim_url: str, value: str
) -> None:
    """Python's JSON parser takes NaN and Infinity: such metadata used to be stored and the
    payer prompted, then the answer failed to render (a 500 for a charged payment)."""
    reference = f"nan-{uuid.uuid4().hex[:8]}"
    body = (
        '{"amount": "100", "currency": "KES", "phone": "0708374149", '
        f'"reference": "{reference}", "metadata": {{"order": {{"ratio": {value}}}}}}}'
    )
    pushes = len(stk_pushes(sim_url))
    with merchant.client() as c:
        refused = c.post(
            "/v1/payments",
            content=body,
            headers={"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
        )
        listed = c.get("/v1/payments", params={"reference": reference}).json()["data"]
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "metadata"
    assert "order.ratio" in error["message"]
    assert listed == [] and len(stk_pushes(sim_url)) == pushes


def test_a_nul_character_is_bad_input_on_every_database(
    merchant: Merchant, gateway: Any, sim_url: str
) -> None:
    """PostgreSQL cannot store a NUL character: a 400 with nothing written, never a 500."""
    reference = f"nul\x00{uuid.uuid4().hex[:6]}"
    pushes = len(stk_pushes(sim_url))
    paid = merchant.pay(amount="10", currency="KES", phone="0708374149", reference=reference)
    with gateway.admin() as admin:
        named = admin.post("/admin/v1/merchants", json={"name": "Shop\x00"})
        listed = admin.get("/admin/v1/reconciliations", params={"account_id": "acct\x00"})
    for response in (paid, named, listed):
        assert response.status_code < 500, response.text
    if paid.status_code == 400:  # PostgreSQL
        assert paid.json()["error"]["code"] == "invalid_character"
        assert len(stk_pushes(sim_url)) == pushes


def test_a_cursor_this_api_never_returned_is_a_400(merchant: Merchant) -> None:
    def encoded(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    odd = ("nonsense", encoded(["2026-01-01T00:00:00", "pay_x"]), encoded([1, 2]),
           encoded(["x", "y"]), encoded({"a": 1, "b": 2}))  # fmt: skip
    with merchant.client() as c:
        for path in ("/v1/payments", "/v1/payouts", "/v1/events"):
            for cursor in odd:
                listed = c.get(path, params={"cursor": cursor})
                assert listed.status_code == 400, (path, cursor, listed.text)
                error = listed.json()["error"]
                assert (error["code"], error["param"]) == ("invalid_cursor", "cursor")
