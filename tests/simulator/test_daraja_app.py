"""Daraja inside the full simulator app: control API, reset, statements, error pages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from lipwa.simulator.app import build_app
from lipwa.simulator.core import SimSettings, Simulator
from tests.simulator.conftest import DarajaKit
from tests.simulator.conftest import assert_daraja_error as assert_error


@pytest.fixture
async def full() -> AsyncIterator[DarajaKit]:
    sim = Simulator(seed=9, settings=SimSettings(prompt_seconds=0.05))
    app = build_app(sim)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client:
        yield DarajaKit(sim, app, client)
    await sim.close()


async def test_scenario_override_through_control_api(full):
    put = await full.client.put(
        "/_sim/scenario", json={"provider": "mpesa", "phone": "254708374149",
                                "outcome": "unreachable"})
    assert put.status_code == 200
    checkout_id = (await full.push()).json()["CheckoutRequestID"]
    await full.settle()
    assert (await full.query(checkout_id)).json()["ResultCode"] == "1037"
    unknown = await full.client.put(
        "/_sim/scenario", json={"provider": "mpesa", "phone": "1", "outcome": "nonsense"})
    assert unknown.status_code == 400


async def test_reset_reopens_accounts_and_forgets_transactions(full):
    checkout_id = (await full.push()).json()["CheckoutRequestID"]
    await full.settle()
    assert (await full.client.get("/_sim/accounts")).json()["mpesa:174379"] == "10"
    assert (await full.client.post("/_sim/reset")).status_code == 200
    accounts = (await full.client.get("/_sim/accounts")).json()
    assert accounts["mpesa:174379"] == "0" and accounts["mpesa:600997:utility"] == "1000000"
    assert (await full.client.get("/_sim/transactions?provider=mpesa")).json() == {}
    # The old CheckoutRequestID is gone; the phone is free; the demo credentials still work.
    full._token = None
    assert_error(await full.query(checkout_id), 400, "400.002.02")
    assert (await full.push()).status_code == 200


async def test_transactions_statement_and_credentials_routes(full):
    await full.push()
    await full.settle()
    records = (await full.client.get("/_sim/transactions?provider=mpesa")).json()["mpesa"]
    assert records[0]["status"] == "completed" and records[0]["type"] == "stk"
    csv_text = (await full.client.get("/_sim/statements/mpesa.csv?shortcode=174379")).text
    assert csv_text.startswith("Receipt No.,Completion Time,")
    assert records[0]["receipt"] in csv_text
    creds = (await full.client.get("/_sim/credentials")).json()["mpesa"]
    assert "BEGIN CERTIFICATE" in creds["b2c"]["certificate_pem"]


async def test_daraja_errors_in_the_full_app(full):
    assert_error(await full.client.get("/mpesa/b2c/v3/paymentrequest"), 405, "405.001")
    assert_error(await full.client.post("/mpesa/nothing/here", json={}), 404, "404.001.01")
    assert_error(await full.client.delete("/oauth/v1/generate"), 405, "405.001")
    logged = (await full.client.get("/_sim/requests?provider=mpesa")).json()
    assert logged["count"] >= 3
