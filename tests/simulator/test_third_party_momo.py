"""A third-party client written for the real MoMo API (PyPI ``mtnmomo-py``, module ``mtnmomo``)
runs unchanged against the simulator on a loopback port; only its base URL differs."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from mtnmomo import (
    MoMoClient,
    MoMoConfig,
    MoMoConflictError,
    MoMoServerError,
    ProductCredentials,
    SandboxProvisioningAPI,
)
from mtnmomo._transport import Transport
from starlette.applications import Starlette

from lipwa.simulator.core import SimSettings, Simulator
from lipwa.simulator.momo import MoMo
from lipwa.simulator.testing import serve_in_thread

if TYPE_CHECKING:
    from tests.simulator.conftest import Receiver


@pytest.fixture
def served() -> Iterator[tuple[str, MoMo]]:
    sim = Simulator(seed=9, settings=SimSettings(prompt_seconds=0.05))
    momo = MoMo(sim)
    with serve_in_thread(Starlette(routes=momo.routes())) as url:
        yield url, momo


def wait_final(get: Any, ref: str) -> Any:
    deadline = time.monotonic() + 5
    while True:
        result = get(ref)
        if result.status != "PENDING" or time.monotonic() > deadline:
            return result
        time.sleep(0.02)


def test_provision_token_request_to_pay_and_status(
    served: tuple[str, MoMo], momo_receiver: tuple[Receiver, str]
) -> None:
    url, momo = served
    receiver, callback_base = momo_receiver
    keys = momo.credentials()["subscription_keys"]

    # Sandbox provisioning through the library: an API user whose callbacks go to loopback.
    with Transport(url) as transport:
        sandbox = SandboxProvisioningAPI(transport, keys["collection"])
        api_user = sandbox.create_api_user("127.0.0.1")
        api_key = sandbox.create_api_key(api_user)
        user = sandbox.get_api_user(api_user)
        assert user is not None and user.provider_callback_host == "127.0.0.1"
        assert user.target_environment == "sandbox"
        with pytest.raises(MoMoConflictError):
            sandbox.create_api_user("127.0.0.1", reference_id=api_user)

    config = MoMoConfig(
        collection=ProductCredentials(keys["collection"], api_user, api_key),
        disbursement=ProductCredentials(keys["disbursement"], api_user, api_key),
        base_url=url,
    )
    with MoMoClient(config) as client:
        assert client.collection is not None and client.disbursement is not None
        token = client.collection.create_access_token()
        assert token.token_type == "access_token" and token.expires_in == 3600

        payer = {"partyIdType": "MSISDN", "partyId": "256772123456"}
        ref = client.collection.request_to_pay(
            {"amount": "1500", "currency": "EUR", "externalId": "order-42", "payer": payer,
             "payerMessage": "Order 42", "payeeNote": "Thanks"},
            callback_url=f"{callback_base}/momo?order=42",
        )
        result = wait_final(client.collection.get_request_to_pay_status, ref)
        assert (result.status, result.amount, result.external_id) == ("SUCCESSFUL", "1500",
                                                                      "order-42")
        assert result.financial_transaction_id and result.payer.party_id == "256772123456"
        assert client.collection.get_account_balance().available_balance == "1500"
        assert client.collection.validate_account_holder_status("msisdn", "46733123450") is False
        client.collection.send_request_to_pay_delivery_notification(ref, "Thanks for paying")

        # Disbursement with its own token and key.
        sent = client.disbursement.transfer(
            {"amount": "300", "currency": "EUR", "externalId": "payout-7",
             "payee": {"partyIdType": "MSISDN", "partyId": "256772000001"},
             "payerMessage": "Salary", "payeeNote": "Salary"})
        assert wait_final(client.disbursement.get_transfer_status, sent).status == "SUCCESSFUL"

        with pytest.raises(MoMoServerError) as wrong:
            client.collection.request_to_pay(
                {"amount": "1", "currency": "UGX", "externalId": "x", "payer": payer})
        assert wrong.value.args[0] == "Currency not supported."

    deadline = time.monotonic() + 5
    while not receiver.calls and time.monotonic() < deadline:
        time.sleep(0.02)
    [call] = receiver.calls
    assert call["method"] == "PUT" and call["query"] == "order=42"
    assert json.loads(call["body"])["status"] == "SUCCESSFUL"


def test_failed_status_reason_is_a_bare_string(served: tuple[str, MoMo]) -> None:
    """The sandbox sends ``"reason": "APPROVAL_REJECTED"``. mtnmomo-py 0.1.0 models reason as
    an object and its TransactionResult.from_dict breaks on the string, so read the raw body
    through the library's transport (a finding for our gateway: accept both forms)."""
    url, momo = served
    creds = momo.credentials()
    collection = ProductCredentials(creds["subscription_keys"]["collection"], creds["api_user"],
                                    creds["api_key"])
    with MoMoClient(MoMoConfig(collection=collection, base_url=url)) as client:
        assert client.collection is not None
        ref = client.collection.request_to_pay(
            {"amount": "10", "currency": "EUR", "externalId": "r",
             "payer": {"partyIdType": "MSISDN", "partyId": "46733123451"}},
            reference_id=str(uuid.uuid4()))
        path = f"/collection/v1_0/requesttopay/{ref}"
        deadline = time.monotonic() + 5
        body = client.collection._request("GET", path)
        while body["status"] == "PENDING" and time.monotonic() < deadline:
            time.sleep(0.02)
            body = client.collection._request("GET", path)
        assert (body["status"], body["reason"]) == ("FAILED", "APPROVAL_REJECTED")
        with pytest.raises(AttributeError):
            client.collection.get_request_to_pay_status(ref)
