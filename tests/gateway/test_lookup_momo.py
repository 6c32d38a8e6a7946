"""POST /v1/phone-lookup for MoMo numbers: is the wallet active, and whose is it."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Merchant

HOLDER_PATH = "/collection/v1_0/accountholder/"


def lookup(merchant: Merchant, **body: Any) -> dict[str, Any]:
    with merchant.client() as c:
        response = c.post("/v1/phone-lookup", json=body)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def holder_requests(sim_url: str) -> list[dict[str, Any]]:
    rows = httpx.get(
        f"{sim_url}/_sim/requests", params={"provider": "momo", "path": HOLDER_PATH}
    ).json()["requests"]
    return list(rows)


def test_an_active_wallet_and_its_holders_name(merchant: Merchant, sim_url: str) -> None:
    found = lookup(merchant, phone="+46 733 123 456")
    assert found["provider"] == "momo" and found["supported"] is True
    # The sandbox gives every holder the same name (given_name "Sand", family_name "Box").
    assert found["account_holder"] == {"active": True, "name": "Sand Box"}
    assert found["warnings"] == []
    paths = [r["path"] for r in holder_requests(sim_url)]
    assert "/collection/v1_0/accountholder/msisdn/46733123456/active" in paths
    assert "/collection/v1_0/accountholder/msisdn/46733123456/basicuserinfo" in paths


@pytest.mark.parametrize("number", ["46733123450", "46733123451"])  # NotFound, NotActive
def test_a_missing_or_inactive_wallet(merchant: Merchant, number: str) -> None:
    found = lookup(merchant, phone=number)
    assert found["account_holder"] == {"active": False, "name": None}
    assert found["warnings"] == []


@pytest.mark.parametrize("number", ["46733123452", "46733123455"])  # NotAllowed, unavailable
def test_a_provider_error_still_answers(merchant: Merchant, number: str) -> None:
    found = lookup(merchant, phone=number)
    assert found["supported"] is True and found["account_holder"] is None
    assert [w["code"] for w in found["warnings"]] == ["provider_error"]


def test_a_slow_provider_does_not_block_the_lookup(merchant: Merchant, sim_url: str) -> None:
    httpx.put(f"{sim_url}/_sim/faults", json={"latency_ms": 6000}).raise_for_status()
    started = time.monotonic()
    found = lookup(merchant, phone="46733123456")
    assert time.monotonic() - started < 4.5
    assert found["account_holder"] is None
    assert [w["code"] for w in found["warnings"]] in (["provider_timeout"], ["provider_error"])


def test_no_holder_check_for_mpesa_or_when_not_asked(merchant: Merchant, sim_url: str) -> None:
    before = len(holder_requests(sim_url))
    mpesa = lookup(merchant, phone="254708374149")
    assert mpesa["provider"] == "mpesa"
    assert "account_holder" not in mpesa and "warnings" not in mpesa  # MoMo numbers only
    skipped = lookup(merchant, phone="46733123456", check_account_holder=False)
    assert skipped["account_holder"] is None
    assert len(holder_requests(sim_url)) == before


def test_no_holder_check_without_a_momo_account_of_the_keys_mode(
    merchant: Merchant, sim_url: str
) -> None:
    """A live key of a merchant that has sandbox accounts only: nothing to ask MoMo with."""
    with merchant.gateway.admin() as admin:
        key = admin.post(f"/admin/v1/merchants/{merchant.id}/api-keys", json={"mode": "live"})
    assert key.status_code == 201, key.text
    live = Merchant(merchant.id, key.json()["key"], merchant.accounts, merchant.gateway)
    before = len(holder_requests(sim_url))
    found = lookup(live, phone="46733123456")
    assert found["supported"] is False and found["account_holder"] is None
    assert len(holder_requests(sim_url)) == before
