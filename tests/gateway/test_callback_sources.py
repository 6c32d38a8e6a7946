"""LIPWA_CALLBACK_SOURCES: provider callbacks are taken only from the allowed addresses."""

from __future__ import annotations

import ipaddress

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from pydantic import ValidationError

from lipwa.api.app import create_app
from lipwa.config import Settings
from lipwa.ip_allowlist import parse_sources, source_allowed
from lipwa.simulator.testing import serve_in_thread
from tests.gateway.conftest import Gateway, Merchant, db_rows
from tests.gateway.test_callbacks import stk_callback

SAFARICOM = "196.201.214.200"  # an address of Safaricom's published callback list
STRANGER = "203.0.113.9"  # documentation range: nobody's


def refused() -> float:
    return REGISTRY.get_sample_value("lipwa_callbacks_refused_total", {"reason": "source"}) or 0.0


def stored_from(database_url: str, address: str) -> int:
    rows = db_rows(
        database_url,
        "SELECT count(*) AS n FROM inbound_callbacks WHERE remote_addr = :a",
        a=address,
    )
    return int(rows[0]["n"])


def test_callbacks_from_outside_the_list_are_refused_and_not_stored(
    gateway: Gateway, merchant: Merchant
) -> None:
    """Behind the proxy (uvicorn believes X-Forwarded-For from 127.0.0.1 only), the provider's
    address decides; the URL token alone no longer lets a forged report in."""
    settings = Settings(
        **{
            **gateway.settings.model_dump(),
            "callback_sources": "196.201.214.0/24, 196.201.212.127",
            "run_worker": False,
        }
    )
    database_url = settings.database_url
    path = merchant.accounts["mpesa"]["callback_url"].split("/callbacks/", 1)[1]
    body = stk_callback("ws_CO_unknown", 1032)
    before = refused()
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        for kind in ("stk/pay_x", "b2c/po_x", "c2b-confirm", "balance/bal_x", "momo/pay_x"):
            answer = client.post(
                f"/callbacks/{path}/{kind}", json=body, headers={"X-Forwarded-For": STRANGER}
            )
            assert answer.status_code == 403, (kind, answer.text)
        allowed = client.post(
            f"/callbacks/{path}/stk/pay_x", json=body, headers={"X-Forwarded-For": SAFARICOM}
        )
        assert allowed.status_code == 200, allowed.text
        # Without a proxy header the connecting address (127.0.0.1 here) is the source.
        assert client.post(f"/callbacks/{path}/stk/pay_x", json=body).status_code == 403
        # The merchant API is not behind the list.
        with merchant.client() as api:
            listed = client.get("/v1/payments", headers=dict(api.headers))
        assert listed.status_code == 200
    assert refused() == before + 6
    assert stored_from(database_url, STRANGER) == 0
    assert stored_from(database_url, SAFARICOM) == 1


def test_a_bad_entry_is_refused_at_start_naming_it() -> None:
    with pytest.raises(ValidationError, match=r"'196\.201\.214\.300' is not an IP address"):
        Settings(callback_sources="196.201.214.200,196.201.214.300")
    assert Settings(callback_sources=" , ").callback_networks == ()


def test_blank_list_takes_every_source() -> None:
    assert source_allowed("203.0.113.9", ()) and source_allowed(None, ())
    allowed = parse_sources("10.0.0.0/8")
    assert not source_allowed(None, allowed) and not source_allowed("testclient", allowed)
    assert source_allowed("::ffff:10.1.2.3", allowed)  # an IPv4 peer on a dual-stack socket


@given(st.ip_addresses(v=4), st.integers(min_value=8, max_value=32), st.ip_addresses(v=4))
def test_an_address_is_allowed_exactly_when_a_listed_block_holds_it(
    member: ipaddress.IPv4Address, prefix: int, other: ipaddress.IPv4Address
) -> None:
    block = ipaddress.ip_network(f"{member}/{prefix}", strict=False)
    allowed = parse_sources(f"{block}")
    assert source_allowed(str(member), allowed)
    assert source_allowed(str(other), allowed) == (other in block)
