"""Helpers of the C2B and balance tests: drive the simulator as Daraja's sandbox portal would
(OAuth token, C2B simulate), read what it recorded, and wait on the gateway's database."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from lipwa.providers.mpesa.c2b import forbidden_words
from tests.gateway.conftest import Merchant, db_rows

SAFE_TOKEN_CHARS = "abdfhjkn"  # no letter of a forbidden word in a row of these


def daraja_token(sim_url: str) -> str:
    creds = httpx.get(f"{sim_url}/_sim/credentials").json()["mpesa"]
    response = httpx.get(
        f"{sim_url}/oauth/v1/generate",
        params={"grant_type": "client_credentials"},
        auth=(creds["consumer_key"], creds["consumer_secret"]),
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def simulate_c2b(
    sim_url: str,
    shortcode: str,
    *,
    amount: int = 10,
    bill_ref: str = "",
    msisdn: int = 254708374149,
    command: str = "CustomerPayBillOnline",
) -> None:
    """What the sandbox's "Simulate" button does: a customer pays the paybill."""
    response = httpx.post(
        f"{sim_url}/mpesa/c2b/v2/simulate",
        json={
            "ShortCode": int(shortcode),
            "CommandID": command,
            "Amount": amount,
            "Msisdn": msisdn,
            "BillRefNumber": bill_ref,
        },
        headers={"Authorization": f"Bearer {daraja_token(sim_url)}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["ResponseCode"] == "0"


def wait_for(check: Callable[[], Any], timeout: float = 10.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def sim_c2b_record(sim_url: str, bill_ref: str, settled: bool = True) -> dict[str, Any] | None:
    """The simulator's record of the C2B payment with this account number (once settled)."""

    def find() -> dict[str, Any] | None:
        records = httpx.get(f"{sim_url}/_sim/transactions", params={"provider": "mpesa"}).json()
        for record in records.get("mpesa", []):
            ours = record.get("type") == "c2b" and record.get("bill_ref_number") == bill_ref
            if ours and (not settled or record["status"] != "pending"):
                return dict(record)
        return None

    found: dict[str, Any] | None = wait_for(find)
    return found


def payments_with_reference(merchant: Merchant, reference: str) -> list[dict[str, Any]]:
    with merchant.client() as c:
        body = c.get("/v1/payments", params={"reference": reference}).json()
    return list(body["data"])


def inbound_rows(database_url: str, account_id: str, kind: str) -> list[dict[str, Any]]:
    return db_rows(
        database_url,
        "SELECT * FROM inbound_callbacks WHERE account_id = :a AND kind = :k ORDER BY id",
        a=account_id,
        k=kind,
    )


def execute(database_url: str, sql: str, **params: Any) -> None:
    """One write against the test database (test set-up only)."""
    import asyncio

    from sqlalchemy import text

    from lipwa.store.db import make_engine

    async def run() -> None:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(sql), params)
        finally:
            await engine.dispose()

    asyncio.run(run())


def set_callback_token(database_url: str, account_id: str, token: str) -> None:
    execute(
        database_url,
        "UPDATE provider_accounts SET callback_token = :t WHERE id = :i",
        t=token,
        i=account_id,
    )


def ensure_registrable_token(database_url: str, merchant: Merchant) -> None:
    """A random callback token contains a word Daraja refuses ("sql", "exe", "cmd"…) a few
    times in a thousand; such an account cannot register C2B URLs (test_c2b covers that). Tests
    that need a registration give such an account a new token first, so they never flake."""
    account = merchant.accounts["mpesa"]
    token = account["callback_url"].rsplit("/", 1)[-1]
    if forbidden_words(token):
        new = "".join(SAFE_TOKEN_CHARS[b % len(SAFE_TOKEN_CHARS)] for b in uuid.uuid4().bytes)
        set_callback_token(database_url, account["id"], new * 2)
        account["callback_url"] = account["callback_url"].rsplit("/", 1)[0] + "/" + new * 2


def register_c2b(merchant: Merchant, response_type: str = "Completed") -> dict[str, Any]:
    with merchant.gateway.admin() as admin:
        response = admin.post(
            f"/admin/v1/accounts/{merchant.accounts['mpesa']['id']}/register-c2b",
            json={"response_type": response_type},
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def set_c2b_rules(merchant: Merchant, **rules: Any) -> dict[str, Any]:
    with merchant.gateway.admin() as admin:
        response = admin.put(
            f"/admin/v1/accounts/{merchant.accounts['mpesa']['id']}/c2b-rules", json=rules
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def new_ref(prefix: str = "INV") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10].upper()}"
