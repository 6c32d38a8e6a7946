"""Happy path of both clients against the in-process simulator (httpx.ASGITransport).

The simulator shares no code with the providers layer, only the wire spec: this is the check
that both sides read it the same way, including the callbacks the simulator really sends.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from lipwa.providers.base import ProviderReport, ReportState, SendOutcome
from lipwa.providers.momo import MomoClient, MomoCredentials, parse_momo_callback
from lipwa.providers.mpesa import MpesaClient, MpesaCredentials, parse_stk_callback
from lipwa.providers.tokens import TokenCache

app_module = pytest.importorskip("lipwa.simulator.app")
core = pytest.importorskip("lipwa.simulator.core")

BASE = "http://simulator.test"


@pytest.fixture
async def simulator() -> AsyncIterator[tuple[Any, httpx.AsyncClient, dict[str, Any]]]:
    sim = core.Simulator(settings=core.SimSettings(prompt_seconds=0.05))
    app = app_module.build_app(sim)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    credentials = (await http.get("/_sim/credentials")).json()
    try:
        yield sim, http, credentials
    finally:
        await sim.close()
        await http.aclose()


def calls(sim: Any, path: str) -> int:
    return sum(1 for r in sim.requests if r["path"].rstrip("/") == path.rstrip("/"))


async def wait_for_callback(sim: Any, provider: str) -> Any:
    for _ in range(200):
        records = [c for c in sim.callbacks if c.provider == provider]
        if records:
            return records[0].body
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {provider} callback recorded")


async def test_mpesa_stk_push_query_and_callback(
    simulator: tuple[Any, httpx.AsyncClient, dict[str, Any]],
) -> None:
    sim, http, creds = simulator
    mpesa = creds["mpesa"]
    client = MpesaClient(
        account_key="acct_sim",
        base_url=BASE,
        credentials=MpesaCredentials(
            consumer_key=mpesa["consumer_key"],
            consumer_secret=mpesa["consumer_secret"],
            shortcode=mpesa["paybill"]["shortcode"],
            kind="paybill",
            passkey=mpesa["paybill"]["passkey"],
        ),
        http=http,
        tokens=TokenCache(),
    )
    assert await client.check_credentials() is None
    sent = await client.stk_push(
        amount=10,
        phone=mpesa["test_msisdn"],
        account_reference="INV-42",
        description="Order 42",
        callback_url="http://127.0.0.1:9/cb/mpesa/acct_sim",
    )
    assert sent.outcome is SendOutcome.ACCEPTED, sent
    assert sent.provider_ref and sent.secondary_ref

    body = await wait_for_callback(sim, "mpesa")
    parsed = parse_stk_callback(body)
    assert parsed is not None
    checkout_id, report = parsed
    assert checkout_id == sent.provider_ref
    assert report.state is ReportState.SUCCEEDED
    assert report.receipt
    assert report.amount == Decimal(10)

    queried = await client.stk_query(sent.provider_ref)
    assert isinstance(queried, ProviderReport)
    assert queried.state is ReportState.SUCCEEDED

    # the cached token dies at the provider: one refresh, one retry, and it works
    assert (await http.post("/_sim/tokens/expire")).status_code == 200
    queries = calls(sim, "/mpesa/stkpushquery/v1/query")
    queried = await client.stk_query(sent.provider_ref)
    assert isinstance(queried, ProviderReport)
    assert queried.state is ReportState.SUCCEEDED
    assert calls(sim, "/mpesa/stkpushquery/v1/query") == queries + 2


async def test_momo_request_to_pay_status_and_callback(
    simulator: tuple[Any, httpx.AsyncClient, dict[str, Any]],
) -> None:
    sim, http, creds = simulator
    momo = creds["momo"]
    client = MomoClient(
        account_key="acct_sim",
        base_url=BASE,
        credentials=MomoCredentials(
            api_user=momo["api_user"],
            api_key=momo["api_key"],
            subscription_keys=momo["subscription_keys"],
            target_environment=momo["target_environment"],
            currency=momo["currency"],
        ),
        http=http,
        tokens=TokenCache(),
    )
    assert await client.check_credentials() is None
    reference = str(uuid.uuid4())
    sent = await client.request_to_pay(
        reference_id=reference,
        amount="15",
        currency=momo["currency"],
        msisdn="46733123999",
        external_id="pay_sim_1",
        payer_message="Order 42",
        payee_note="Thank's",
        callback_url=f"http://{momo['callback_host']}:9/cb/momo/acct_sim",
    )
    assert sent.outcome is SendOutcome.ACCEPTED, sent
    assert sent.provider_ref == reference

    body = await wait_for_callback(sim, "momo")
    callback = parse_momo_callback(body)
    assert callback is not None
    assert callback.state is ReportState.SUCCEEDED
    assert callback.external_id == "pay_sim_1"

    status = await client.get_request_to_pay(reference)
    assert isinstance(status, ProviderReport)
    assert status.state is ReportState.SUCCEEDED
    assert status.receipt
    assert status.amount == Decimal(15)

    # the same reference again: MoMo says it exists, which counts as accepted
    again = await client.request_to_pay(
        reference_id=reference,
        amount="15",
        currency=momo["currency"],
        msisdn="46733123999",
        external_id="pay_sim_1",
        payer_message="Order 42",
        payee_note="Thanks",
        callback_url=None,
    )
    assert again.outcome is SendOutcome.ACCEPTED
    assert again.http_status == 409

    assert (await http.post("/_sim/tokens/expire")).status_code == 200
    tokens_before = calls(sim, "/collection/token/")
    unknown = await client.get_request_to_pay(str(uuid.uuid4()))
    assert calls(sim, "/collection/token/") == tokens_before + 1
    assert isinstance(unknown, ProviderReport)
    assert unknown.state is ReportState.NOT_FOUND
