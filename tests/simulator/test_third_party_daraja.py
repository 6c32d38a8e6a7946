"""A third-party Daraja client, written for the real API, against the simulator.

``mpesakit`` 2.2.0 (PyPI) runs unchanged; the only difference from talking to Safaricom's
sandbox is the base URL. mpesakit has no base-URL option (``environment`` picks one of two
hard-coded hosts), so we set the public ``http_client.base_url`` attribute that its
``MpesaHttpClient`` reads on every request — the library's code is not modified.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from mpesakit import MpesaClient
from mpesakit.b2c.schemas import B2CCommandIDType
from mpesakit.errors import MpesaApiException

from lipwa.simulator.app import build_app
from lipwa.simulator.core import SimSettings, Simulator
from lipwa.simulator.testing import serve_in_thread


@pytest.fixture
def served() -> Iterator[tuple[Simulator, str, dict]]:
    sim = Simulator(seed=2, settings=SimSettings(prompt_seconds=0.2))
    app = build_app(sim)
    with serve_in_thread(app) as base_url:
        yield sim, base_url, app.state.daraja.credentials()


def make_client(base_url: str, creds: dict) -> MpesaClient:
    client = MpesaClient(creds["consumer_key"], creds["consumer_secret"], environment="sandbox")
    client.http_client.base_url = base_url  # the one change: where "sandbox" lives
    return client


def wait_for(predicate, within: float = 5.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_mpesakit_oauth_stk_push_and_query(served, daraja_receiver):
    sim, base_url, creds = served
    client = make_client(base_url, creds)
    paybill = creds["paybill"]

    pushed = client.stk_push(
        business_short_code=int(paybill["shortcode"]),
        transaction_type="CustomerPayBillOnline",
        amount=10,
        party_a=creds["test_msisdn"],
        party_b=paybill["shortcode"],
        phone_number=creds["test_msisdn"],
        callback_url=f"{daraja_receiver.url}/stk",
        account_reference="INV-3P",
        transaction_desc="Third party",
        passkey=paybill["passkey"],
    )
    assert pushed.is_successful()
    checkout_id = pushed.CheckoutRequestID

    def query():
        return client.stk_query(
            business_short_code=int(paybill["shortcode"]),
            checkout_request_id=checkout_id,
            passkey=paybill["passkey"],
        )

    # While the prompt is open the real API answers HTTP 500 "being processed"; the client
    # surfaces it as an error carrying Daraja's body.
    with pytest.raises(MpesaApiException) as pending:
        query()
    assert pending.value.error.status_code == 500
    assert pending.value.error.raw_response["errorCode"] == "500.001.1001"

    def final():
        try:
            return query()
        except MpesaApiException:
            return None

    answer = wait_for(final)
    assert str(answer.ResultCode) == "0"

    [payload] = wait_for(lambda: [c["body"] for c in daraja_receiver.calls
                                  if c["path"] == "/stk"])
    parsed = client.process_stk_callback(payload)  # the client's own schema accepts it
    assert parsed.is_successful  # a property in mpesakit's callback model
    assert parsed.phone_number == "254708374149"
    assert parsed.mpesa_receipt_number == sim.transactions["mpesa"][checkout_id]["receipt"]
    assert float(parsed.amount) == 10.0


def test_mpesakit_rejects_with_darajas_errors(served):
    _, base_url, creds = served
    wrong = make_client(base_url, {**creds, "consumer_secret": "nope"})
    with pytest.raises(MpesaApiException) as failed:
        wrong.token_manager.get_token()
    assert failed.value.error.raw_response["errorCode"] == "400.008.01"

    client = make_client(base_url, creds)
    with pytest.raises(MpesaApiException) as wrong_password:
        client.stk_push(
            business_short_code=174379, transaction_type="CustomerPayBillOnline", amount=10,
            party_a="254708374149", party_b="174379", phone_number="254708374149",
            callback_url="https://example.com/cb", account_reference="X",
            transaction_desc="x", passkey="not-the-passkey",
        )
    assert wrong_password.value.error.raw_response["errorMessage"] == "Wrong credentials"


def test_mpesakit_c2b_register_and_b2c(served, daraja_receiver):
    _, base_url, creds = served
    client = make_client(base_url, creds)
    registered = client.c2b.register_url(
        short_code=int(creds["c2b"]["shortcode"]),
        response_type="Completed",
        confirmation_url=f"{daraja_receiver.url}/c2b/confirm",
        validation_url=f"{daraja_receiver.url}/c2b/validate",
    )
    assert registered.is_successful()

    b2c = creds["b2c"]
    accepted = client.b2c.send_payment(
        originator_conversation_id=str(uuid.uuid4()),
        initiator_name=b2c["initiator_name"],
        security_credential=b2c["security_credential"],
        command_id=B2CCommandIDType.BusinessPayment,
        amount=100,
        party_a=b2c["shortcode"],
        party_b="254705912645",
        remarks="Third party payout",
        queue_timeout_url=f"{daraja_receiver.url}/b2c/timeout",
        result_url=f"{daraja_receiver.url}/b2c/result",
        occasion="Payout",  # mpesakit spells it "Occasion"; Daraja's sample says "Occassion"
    )
    assert accepted.is_successful()
    [payload] = wait_for(lambda: [c["body"] for c in daraja_receiver.calls
                                  if c["path"] == "/b2c/result"])
    # Not parsed with mpesakit's B2CResultCallback: it models ResultParameters as a bare
    # list, while Daraja's documented Result wraps it as {"ResultParameter": [...]} (§2.5).
    assert payload["Result"]["ResultCode"] == 0
    assert payload["Result"]["OriginatorConversationID"] == accepted.OriginatorConversationID
