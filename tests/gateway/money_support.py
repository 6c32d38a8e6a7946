"""Helpers shared by tests/gateway/test_payouts.py and test_refunds.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.gateway.conftest import Merchant

FINAL = {"succeeded", "failed", "cancelled"}
MPESA_PHONE = "0708374149"
MOMO_PHONE = "+250788123456"  # MTN Rwanda


def set_faults(sim_url: str, **faults: float) -> None:
    httpx.put(f"{sim_url}/_sim/faults", json=faults).raise_for_status()


def scenario(sim_url: str, provider: str, outcome: str | None, **selector: str) -> None:
    body = {"provider": provider, "outcome": outcome, **selector}
    httpx.put(f"{sim_url}/_sim/scenario", json=body).raise_for_status()


def sim_requests(sim_url: str, path: str, method: str = "POST") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = httpx.get(
        f"{sim_url}/_sim/requests", params={"path": path}
    ).json()["requests"]
    return [r for r in rows if r["method"] == method]


def sim_callbacks(sim_url: str, kind: str) -> list[dict[str, Any]]:
    rows = httpx.get(f"{sim_url}/_sim/callbacks").json()["callbacks"]
    return [r for r in rows if r["kind"] == kind]


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def post_payout(
    merchant: Merchant, client: httpx.Client | None = None, key: str | None = None, **body: Any
) -> httpx.Response:
    payload = {"reference": f"po-{uuid.uuid4().hex[:8]}", "reason": "Cashback", **body}
    headers = {"Idempotency-Key": key or str(uuid.uuid4())}
    c = client or merchant.client()
    return c.post("/v1/payouts", json=payload, headers=headers)


def wait_status(
    merchant: Merchant, path: str, statuses: set[str] = FINAL, timeout: float = 20.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with merchant.client() as c:
        while True:
            body: dict[str, Any] = c.get(path).json()
            if body.get("status") in statuses:
                return body
            assert time.monotonic() < deadline, f"{path} still {body.get('status')}"
            time.sleep(0.1)


def new_api_key(merchant: Merchant) -> str:
    with merchant.gateway.admin() as admin:
        key: str = admin.post(
            f"/admin/v1/merchants/{merchant.id}/api-keys", json={"mode": "test"}
        ).json()["key"]
    return key


def events_of(merchant: Merchant, resource_id: str) -> list[str]:
    with merchant.client() as c:
        data = c.get("/v1/events", params={"resource_id": resource_id, "limit": 100}).json()
    return sorted(e["type"] for e in data["data"])


def paid_payment(merchant: Merchant, currency: str, phone: str, amount: str) -> dict[str, Any]:
    """A payment the simulator settles as paid (with a receipt, through its callback)."""
    response = merchant.pay(
        amount=amount, currency=currency, phone=phone, reference=f"r-{uuid.uuid4().hex[:8]}"
    )
    assert response.status_code == 201, response.text
    payment = merchant.wait_final(response.json()["id"])
    assert payment["status"] == "succeeded", payment
    return payment
