"""Property: whatever is thrown at a MoMo route, the answer is a documented MoMo shape.

Documented shapes: 2xx as the API defines; 400 with an empty body; product errors
``{"code", "message"}``; token errors ``{"error"}``; APIM errors ``{"statusCode", "message"}``.
Never a traceback, never HTML, never an exception out of the app.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from lipwa.simulator.core import SimSettings, Simulator
from lipwa.simulator.momo import MoMo
from lipwa.simulator.momo_wire import MESSAGES

KNOWN_REF = str(uuid.uuid4())
# (path template, the method the route serves)
TEMPLATES = [
    ("/v1_0/apiuser", "POST"), ("/v1_0/apiuser/{p}", "GET"), ("/v1_0/apiuser/{p}/apikey", "POST"),
    ("/collection/token/", "POST"), ("/disbursement/token", "POST"),
    ("/remittance/token/", "POST"),
    ("/collection/v1_0/requesttopay", "POST"), ("/collection/v1_0/requesttopay/{p}", "GET"),
    ("/collection/v1_0/requesttopay/{p}/deliverynotification", "POST"),
    ("/disbursement/v1_0/requesttopay/{p}/deliverynotification", "POST"),
    ("/disbursement/v1_0/transfer", "POST"), ("/disbursement/v1_0/transfer/{p}", "GET"),
    ("/disbursement/v1_0/deposit", "POST"), ("/disbursement/v2_0/deposit", "POST"),
    ("/disbursement/v1_0/deposit/{p}", "GET"),
    ("/disbursement/v1_0/refund", "POST"), ("/disbursement/v2_0/refund", "POST"),
    ("/disbursement/v1_0/refund/{p}", "GET"),
    ("/collection/v1_0/account/balance", "GET"),
    ("/disbursement/v1_0/account/balance/{p}", "GET"),
    ("/collection/v1_0/accountholder/{p}/{p}/active", "GET"),
    ("/disbursement/v1_0/accountholder/msisdn/{p}/basicuserinfo", "GET"),
    ("/collection/v2_0/{p}", "GET"), ("/remittance/v1_0/{p}", "POST"),
]
ALLOWED_STATUS = {200, 201, 202, 400, 401, 404, 405, 409, 500, 503}
CODES = set(MESSAGES) | {"PAYER_NOT_FOUND", "NOT_ALLOWED"}
ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ascii_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ascii_text, inner, max_size=4),
    max_leaves=12,
)


class Harness:
    """One simulator and client on a private event loop, shared by all examples."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.sim = Simulator(seed=1, settings=SimSettings(prompt_seconds=0.01,
                                                          momo_callback_host="127.0.0.1"))
        self.momo = MoMo(self.sim)
        app = Starlette(routes=self.momo.routes())
        # raise_app_exceptions: an exception escaping the app fails the test.
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                        base_url="http://momo.test")
        creds = self.momo.credentials()
        self.keys: dict[str, str] = creds["subscription_keys"]
        self.basic = "Basic " + base64.b64encode(
            f"{creds['api_user']}:{creds['api_key']}".encode()).decode()
        self.bearers = {p: self.run(self._token(p)) for p in ("collection", "disbursement")}
        self.run(self.client.post(
            "/collection/v1_0/requesttopay",
            headers={**self.product_headers("collection"), "X-Reference-Id": KNOWN_REF},
            json={"amount": "5", "currency": "EUR",
                  "payer": {"partyIdType": "MSISDN", "partyId": "256772123456"}}))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _token(self, product: str) -> str:
        response = await self.client.post(f"/{product}/token/", headers={
            "Authorization": self.basic, "Ocp-Apim-Subscription-Key": self.keys[product]})
        return str(response.json()["access_token"])

    def product_headers(self, product: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bearers[product]}",
                "Ocp-Apim-Subscription-Key": self.keys[product],
                "X-Target-Environment": "sandbox"}

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self.sim.close())
        self.loop.close()


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


@st.composite
def requests(draw: st.DrawFn, h: Harness) -> tuple[str, str, dict[str, str], bytes | None]:
    param = st.one_of(st.just(KNOWN_REF), st.uuids(version=4).map(str), ascii_text,
                      st.sampled_from(["msisdn", "email", "party_code", "EUR", "46733123455"]))
    path, method = draw(st.sampled_from(TEMPLATES))
    while "{p}" in path:
        path = path.replace("{p}", quote(draw(param), safe="") or "x", 1)
    if draw(st.integers(0, 9)) == 0:  # now and then a method the route does not serve
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    product = path.split("/")[1]
    if product not in ("collection", "disbursement") or draw(st.integers(0, 9)) == 0:
        product = draw(st.sampled_from(["collection", "disbursement"]))
    # header -> (a value that passes, values that should not)
    choices: dict[str, tuple[str, st.SearchStrategy[str]]] = {
        "Authorization": (
            h.basic if path.startswith("/" + product + "/token") else
            f"Bearer {h.bearers[product]}",
            st.sampled_from([h.basic, "Bearer x", "Basic Og==", "Basic ???"]) | ascii_text,
        ),
        "Ocp-Apim-Subscription-Key": (h.keys[product], st.just(h.keys["remittance"]) | ascii_text),
        "X-Target-Environment": ("sandbox", st.sampled_from(["mtnrwanda", "MTN"]) | ascii_text),
        "X-Reference-Id": (str(uuid.uuid4()), st.just(KNOWN_REF) | ascii_text),
        "X-Callback-Url": ("http://127.0.0.1:1/cb", st.sampled_from(
            ["https://x.example/cb", "", "http://[::1", "ftp://127.0.0.1/"]) | ascii_text),
        "notificationMessage": ("Paid", ascii_text),
    }
    headers = {}
    for name, (good, bad) in choices.items():
        pick = draw(st.integers(0, 9))
        if pick < 8:
            headers[name] = good
        elif pick < 9:
            headers[name] = draw(bad)
    order = {"amount": "10", "currency": "EUR", "externalId": "e",
             "payer": {"partyIdType": "MSISDN", "partyId": "256772123456"},
             "payee": {"partyIdType": "MSISDN", "partyId": "256772123456"},
             "referenceIdToRefund": KNOWN_REF, "providerCallbackHost": "127.0.0.1"}
    mutated = draw(st.dictionaries(st.sampled_from(sorted(order)), json_values, max_size=2))
    body = draw(st.one_of(
        st.just(json.dumps(order).encode()),
        st.just(json.dumps({**order, **mutated}).encode()),
        st.none(),
        st.binary(max_size=64),
        json_values.map(lambda v: json.dumps(v).encode()),
    ))
    return method, path, headers, body


def assert_documented(response: httpx.Response) -> None:
    assert response.status_code in ALLOWED_STATUS, response.status_code
    if response.status_code < 300:
        if response.content:
            response.json()
        return
    if response.status_code == 400:
        assert response.content == b""
        return
    body = response.json()
    assert isinstance(body, dict)
    if set(body) == {"code", "message"}:
        assert body["code"] in CODES or response.status_code in (404, 405, 409), body
        assert isinstance(body["message"], str)
    elif set(body) == {"error"}:
        assert (response.status_code, body) == (401, {"error": "login_failed"})
    else:
        assert set(body) == {"statusCode", "message"}, body
        assert body["statusCode"] == response.status_code


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_request_gets_a_documented_answer(harness: Harness, data: st.DataObject) -> None:
    method, path, headers, body = data.draw(requests(harness))
    response = harness.run(harness.client.request(method, path, headers=headers, content=body))
    event(f"{response.status_code}")
    assert_documented(response)
