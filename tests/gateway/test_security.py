"""Secrets stay secret, tenants stay apart, test keys never reach production."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from lipwa.config import Settings
from tests.gateway.conftest import ADMIN_TOKEN, Merchant, db_rows


def secret_values(sim_url: str) -> list[str]:
    creds = httpx.get(f"{sim_url}/_sim/credentials").json()
    mpesa, momo = creds["mpesa"], creds["momo"]
    return [
        mpesa["consumer_secret"],
        mpesa["paybill"]["passkey"],
        momo["api_key"],
        *momo["subscription_keys"].values(),
    ]


def test_reads_never_return_secrets(merchant: Merchant, gateway: Any, sim_url: str) -> None:
    with gateway.admin() as admin:
        listed = admin.get(f"/admin/v1/merchants/{merchant.id}/accounts").text
    for created in merchant.accounts.values():
        assert set(created["credentials"].values()) == {"********"}
    for secret in secret_values(sim_url):
        assert secret not in listed
        for created in merchant.accounts.values():
            assert secret not in str(created)


def test_database_holds_no_secret_in_clear(
    merchant: Merchant, database_url: str, sim_url: str
) -> None:
    dump = str(db_rows(database_url, "SELECT * FROM provider_accounts"))
    dump += str(db_rows(database_url, "SELECT * FROM api_keys"))
    for secret in [*secret_values(sim_url), merchant.api_key]:
        assert secret not in dump
    sealed = db_rows(
        database_url,
        "SELECT secrets_sealed FROM provider_accounts WHERE merchant_id = :m",
        m=merchant.id,
    )
    assert all(row["secrets_sealed"].startswith("lw1.v1.") for row in sealed)


def test_logs_hold_none_of_the_secrets(merchant: Merchant, gateway: Any, sim_url: str) -> None:
    payment = merchant.pay(amount="10", currency="KES", phone="0708374149").json()
    merchant.wait_final(payment["id"])
    momo = merchant.pay(amount="2", currency="EUR", phone="+256772123456").json()
    merchant.wait_final(momo["id"])
    log = gateway.log_path.read_text()
    assert log  # the gateway did log
    tokens = [a["callback_url"].rsplit("/", 1)[-1] for a in merchant.accounts.values()]
    for secret in [*secret_values(sim_url), merchant.api_key, ADMIN_TOKEN, *tokens]:
        assert secret not in log
    assert "254708374149" not in log


def test_live_key_never_uses_sandbox_accounts(gateway: Any, merchant: Merchant) -> None:
    with gateway.admin() as admin:
        live = admin.post(
            f"/admin/v1/merchants/{merchant.id}/api-keys", json={"mode": "live"}
        ).json()["key"]
    assert live.startswith("lw_live_")
    with gateway.client(live) as c:
        response = c.post(
            "/v1/payments",
            json={"amount": "10", "currency": "KES", "phone": "0708374149", "reference": "x"},
            headers={"Idempotency-Key": "live-1"},
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "no_account_for_network"
        # The test-mode payments of the same merchant are invisible to the live key.
        assert c.get("/v1/payments").json()["data"] == []


def test_sandbox_account_cannot_point_at_a_production_host(gateway: Any) -> None:
    with gateway.admin() as admin:
        merchant = admin.post("/admin/v1/merchants", json={"name": "M"}).json()
        for provider, url, creds in [
            (
                "mpesa",
                "https://api.safaricom.co.ke",
                {
                    "consumer_key": "FAKE",
                    "consumer_secret": "FAKE",
                    "shortcode": "174379",
                    "kind": "paybill",
                    "passkey": "FAKE",
                },
            ),
            (
                "momo",
                "https://proxy.momoapi.mtn.com",
                {
                    "api_user": "u",
                    "api_key": "FAKE",
                    "subscription_keys": {"collection": "FAKE"},
                    "target_environment": "sandbox",
                    "currency": "EUR",
                },
            ),
        ]:
            response = admin.post(
                f"/admin/v1/merchants/{merchant['id']}/accounts",
                json={
                    "provider": provider,
                    "environment": "sandbox",
                    "base_url": url,
                    "credentials": creds,
                },
            )
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "sandbox_account_on_production_host"
            # The same host in a spelling httpx would connect to all the same.
            lookalike = url.replace(".", "\u3002")
            response = admin.post(
                f"/admin/v1/merchants/{merchant['id']}/accounts",
                json={
                    "provider": provider,
                    "environment": "sandbox",
                    "base_url": lookalike,
                    "credentials": creds,
                },
            )
            assert response.json()["error"]["code"] == "sandbox_account_on_production_host"
            # And a production account on the provider's sandbox: live payments would
            # "succeed" without money moving.
            sandbox = "https://sandbox.safaricom.co.ke" if provider == "mpesa" else (
                "https://sandbox.momodeveloper.mtn.com"
            )
            response = admin.post(
                f"/admin/v1/merchants/{merchant['id']}/accounts",
                json={
                    "provider": provider,
                    "environment": "production",
                    "base_url": sandbox,
                    "credentials": creds,
                },
            )
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "production_account_on_sandbox_host"


def test_admin_api_needs_the_admin_token(gateway: Any) -> None:
    with httpx.Client(base_url=gateway.url) as c:
        assert c.post("/admin/v1/merchants", json={"name": "x"}).status_code == 401
        wrong = c.post(
            "/admin/v1/merchants", json={"name": "x"}, headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401


def test_a_blank_admin_token_keeps_the_admin_api_off_and_a_short_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``LIPWA_ADMIN_TOKEN=`` (an empty .env line, an unset compose variable) must not open the
    admin API to an empty bearer; a guessable token is refused at start."""
    for blank in ("", "   "):
        monkeypatch.setenv("LIPWA_ADMIN_TOKEN", blank)
        monkeypatch.setenv("LIPWA_METRICS_TOKEN", blank)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.admin_token is None and settings.metrics_token is None
    monkeypatch.setenv("LIPWA_ADMIN_TOKEN", "admin123")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("blank", ["", " ", ",", " , "])
def test_a_blank_worker_jobs_setting_means_every_job(
    monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    """Not a worker that runs nothing while its heartbeat says it is healthy."""
    from lipwa.worker.embedded import selected_jobs
    from lipwa.worker.runner import default_jobs

    monkeypatch.setenv("LIPWA_WORKER_JOBS", blank)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.worker_jobs is None
    assert [j.name for j in selected_jobs(settings.worker_jobs)] == [
        j.name for j in default_jobs()
    ]


def test_bad_credentials_are_refused_with_the_field_named(gateway: Any) -> None:
    with gateway.admin() as admin:
        merchant = admin.post("/admin/v1/merchants", json={"name": "M"}).json()
        response = admin.post(
            f"/admin/v1/merchants/{merchant['id']}/accounts",
            json={
                "provider": "mpesa",
                "environment": "sandbox",
                "credentials": {"consumer_key": "FAKE", "shortcode": "12"},
            },
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"].startswith("credentials.")
        assert "FAKE" not in response.text


def test_an_account_no_payment_could_pass_is_refused_when_added(gateway: Any) -> None:
    """A MoMo account in a currency MoMo does not take, or a base URL that cannot be parsed,
    is a 400 naming the field (it was a 201, then every payment failed; or a 500)."""
    with gateway.admin() as admin:
        merchant = admin.post("/admin/v1/merchants", json={"name": "M"}).json()
        add = f"/admin/v1/merchants/{merchant['id']}/accounts"
        momo = {
            "api_user": "FAKE-user",
            "api_key": "FAKE-key",
            "subscription_keys": {"collection": "FAKE-sub"},
            "target_environment": "mtnrwanda",
            "currency": "USD",
        }
        usd = admin.post(add, json={"provider": "momo", "environment": "sandbox",
                                    "credentials": momo})  # fmt: skip
        assert usd.status_code == 400, usd.text
        assert usd.json()["error"]["param"] == "credentials.currency"
        assert "RWF" in usd.json()["error"]["message"]
        for base_url in ("http://[::1", "http://127.0.0.1:port"):
            broken = admin.post(add, json={
                "provider": "momo", "environment": "sandbox", "base_url": base_url,
                "credentials": {**momo, "currency": "RWF"}})  # fmt: skip
            assert broken.status_code == 400, broken.text
            error = broken.json()["error"]
            assert (error["code"], error["param"]) == ("invalid_base_url", "base_url")
        assert admin.get(add).json()["data"] == []


def test_idempotency_keys_are_apart_per_mode(gateway: Any, merchant: Merchant) -> None:
    with gateway.admin() as admin:
        live = admin.post(
            f"/admin/v1/merchants/{merchant.id}/api-keys", json={"mode": "live"}
        ).json()["key"]
    body = {"amount": "10", "currency": "KES", "phone": "0708374149", "reference": "same"}
    test_answer = merchant.pay(idempotency_key="shared-key", **body)
    assert test_answer.status_code == 201
    with gateway.client(live) as c:
        live_answer = c.post("/v1/payments", json=body, headers={"Idempotency-Key": "shared-key"})
    # The live key has no production account: it is refused, never handed the test payment.
    assert live_answer.status_code == 400
    assert "Idempotent-Replayed" not in live_answer.headers
    assert test_answer.json()["id"] not in live_answer.text
