"""Operating merchants: API keys revoked, accounts disabled and enabled, through the admin API
and the CLI (`lipwa merchants | accounts | api-keys`), each with its audit entry."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from lipwa.cli import app as cli_app
from lipwa.simulator.core import Simulator
from tests.gateway.conftest import Gateway, Merchant, create_merchant, db_rows
from tests.gateway.test_reconciliation import cli_env
from tests.gateway.test_security import secret_values


def audit(gateway: Gateway, merchant_id: str, action: str | None = None) -> list[dict[str, Any]]:
    with gateway.admin() as admin:
        params = {"merchant_id": merchant_id, **({"action": action} if action else {})}
        entries: list[dict[str, Any]] = admin.get("/admin/v1/audit", params=params).json()["data"]
    return entries


def cli(gateway: Gateway, *args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(cli_app, list(args), env=cli_env(gateway), input=stdin)


# ----- admin API --------------------------------------------------------------------------------
def test_a_revoked_key_is_refused_at_once_and_listed_by_its_hint_only(
    merchant: Merchant, gateway: Gateway
) -> None:
    with merchant.client() as c:
        assert c.get("/v1/payments").status_code == 200  # the gateway now caches the key
    with gateway.admin() as admin:
        listed = admin.get(f"/admin/v1/merchants/{merchant.id}/api-keys")
        assert listed.status_code == 200
        [key] = listed.json()["data"]
        assert (key["status"], key["revoked_at"]) == ("active", None)
        assert key["hint"].endswith(merchant.api_key[-4:])
        assert merchant.api_key not in listed.text and "key_hash" not in listed.text
        path = f"/admin/v1/merchants/{merchant.id}/api-keys/{key['id']}/revoke"
        revoked = admin.post(path, json={"reason": "leaked in a support ticket"})
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["status"] == "revoked" and revoked.json()["revoked_at"]
        assert merchant.api_key not in revoked.text
        with merchant.client() as c:
            refused = c.get("/v1/payments")
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "invalid_api_key"
            paid = merchant.pay(c, amount="10", currency="KES", phone="0708374149")
            assert paid.status_code == 401
        again = admin.post(path)  # revoking twice changes nothing
        assert again.status_code == 200
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
        after = admin.get(f"/admin/v1/merchants/{merchant.id}/api-keys").json()["data"]
        assert [k["status"] for k in after] == ["revoked"]
    [entry] = audit(gateway, merchant.id, "api_key.revoked")
    assert (entry["target"], entry["reason"]) == (key["id"], "leaked in a support ticket")
    assert entry["detail"] == {"mode": "test"}
    rows = db_rows(gateway.settings.database_url, "SELECT * FROM payments WHERE merchant_id = :m",
                   m=merchant.id)  # fmt: skip
    assert rows == []  # the refused payment wrote nothing


def test_another_merchants_key_or_account_is_not_found(
    merchant: Merchant, gateway: Gateway, sim_url: str
) -> None:
    other = create_merchant(gateway, sim_url)
    with gateway.admin() as admin:
        [other_key] = admin.get(f"/admin/v1/merchants/{other.id}/api-keys").json()["data"]
        mine = f"/admin/v1/merchants/{merchant.id}"
        wrong_key = admin.post(f"{mine}/api-keys/{other_key['id']}/revoke")
        assert wrong_key.status_code == 404
        assert wrong_key.json()["error"]["type"] == "invalid_request_error"
        wrong_account = admin.post(f"{mine}/accounts/{other.accounts['mpesa']['id']}/disable")
        assert wrong_account.status_code == 404
        assert admin.post(f"{mine}/api-keys/key_nope/revoke").status_code == 404
        assert admin.get("/admin/v1/merchants/mer_nope/api-keys").status_code == 404
    paid = other.pay(amount="10", currency="KES", phone="0708374149")
    assert paid.status_code == 201, paid.text  # untouched: its key and account still work
    assert audit(gateway, other.id, "api_key.revoked") == []
    assert audit(gateway, other.id, "account.disabled") == []


def test_a_disabled_account_takes_no_new_payment_but_settles_its_open_ones(
    merchant: Merchant, gateway: Gateway, sim: Simulator
) -> None:
    sim.settings.prompt_seconds = 1.0  # the callback comes after the account is disabled
    open_payment = merchant.pay(amount="10", currency="KES", phone="0708374149").json()
    account = merchant.accounts["mpesa"]["id"]
    path = f"/admin/v1/merchants/{merchant.id}/accounts/{account}"
    with gateway.admin() as admin:
        disabled = admin.post(f"{path}/disable", json={"reason": "shortcode under review"})
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["status"] == "disabled"
        assert set(disabled.json()["credentials"].values()) == {"********"}
        refused = merchant.pay(amount="10", currency="KES", phone="0708374149")
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "no_account_for_network"
        momo = merchant.pay(amount="2", currency="EUR", phone="+256772123456")
        assert momo.status_code == 201  # only that account is off
        settled = merchant.wait_final(open_payment["id"])
        assert settled["status"] == "succeeded"  # its callback was still applied
        assert admin.post(f"{path}/disable").json()["status"] == "disabled"  # no change
        enabled = admin.post(f"{path}/enable")
        assert enabled.json()["status"] == "active"
    assert merchant.pay(amount="10", currency="KES", phone="0708374149").status_code == 201
    [off] = audit(gateway, merchant.id, "account.disabled")
    assert (off["target"], off["reason"]) == (account, "shortcode under review")
    assert len(audit(gateway, merchant.id, "account.enabled")) == 1


def test_merchants_are_listed_newest_first(gateway: Gateway, sim_url: str) -> None:
    older = create_merchant(gateway, sim_url)
    newer = create_merchant(gateway, sim_url)
    with gateway.admin() as admin:
        listed = admin.get("/admin/v1/merchants", params={"limit": 2}).json()["data"]
        assert [m["id"] for m in listed] == [newer.id, older.id]
        assert admin.get("/admin/v1/merchants", params={"limit": 0}).status_code == 400
        assert httpx.get(f"{gateway.url}/admin/v1/merchants").status_code == 401


# ----- CLI --------------------------------------------------------------------------------------
def test_the_cli_sets_up_a_merchant_that_takes_a_payment_and_revokes_its_key(
    gateway: Gateway, sim_url: str, sim: Simulator, tmp_path: Path
) -> None:
    made = cli(gateway, "merchants", "create", "Duka la Mama", "--actor", "ops-amina", "--json")
    assert made.exit_code == 0, made.output
    merchant_id = json.loads(made.output)["id"]
    mpesa = httpx.get(f"{sim_url}/_sim/credentials").json()["mpesa"]
    credentials = {
        "consumer_key": mpesa["consumer_key"],
        "consumer_secret": mpesa["consumer_secret"],
        "shortcode": mpesa["paybill"]["shortcode"],
        "kind": "paybill",
        "passkey": mpesa["paybill"]["passkey"],
    }
    creds_file = tmp_path / "mpesa.json"
    creds_file.write_text(json.dumps(credentials))
    added = cli(gateway, "accounts", "add", merchant_id, "--provider", "mpesa",
                "--environment", "sandbox", "--base-url", sim_url,
                "--credentials", str(creds_file), "--actor", "ops-amina")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert f"{gateway.settings.public_url}/callbacks/" in added.output
    key_made = cli(gateway, "api-keys", "create", merchant_id, "--mode", "test", "--json")
    assert key_made.exit_code == 0, key_made.output
    key = json.loads(key_made.output)
    assert key["key"].startswith("lw_test_")
    for secret in secret_values(sim_url):
        assert secret not in added.output + key_made.output

    shop = Merchant(id=merchant_id, api_key=key["key"], accounts={}, gateway=gateway)
    paid = shop.pay(amount="10", currency="KES", phone="0708374149")
    assert paid.status_code == 201, paid.text
    assert shop.wait_final(paid.json()["id"])["status"] == "succeeded"

    revoked = cli(gateway, "api-keys", "revoke", key["id"], "--reason", "rotated")
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in revoked.output
    # Another process revoked it: the gateway's key cache lets it through for at most 10 s.
    deadline = time.monotonic() + 15
    with shop.client() as c:
        while c.get("/v1/payments").status_code == 200:
            assert time.monotonic() < deadline, "the revoked key still works after 15 s"
            time.sleep(0.5)
        assert c.get("/v1/payments").status_code == 401
    listed = cli(gateway, "api-keys", "list", merchant_id, "--json")
    assert [k["status"] for k in json.loads(listed.output)] == ["revoked"]
    assert key["key"] not in listed.output
    actions = {e["action"]: e["actor"] for e in audit(gateway, merchant_id)}
    assert actions["merchant.created"] == "ops-amina"
    assert actions["account.created"] == "ops-amina"
    assert {"api_key.created", "api_key.revoked"} <= actions.keys()


def test_the_cli_refuses_bad_input_and_stores_nothing(
    gateway: Gateway, merchant: Merchant, tmp_path: Path
) -> None:
    def accounts() -> list[dict[str, Any]]:
        listed = cli(gateway, "accounts", "list", merchant.id, "--json")
        assert listed.exit_code == 0, listed.output
        rows: list[dict[str, Any]] = json.loads(listed.output)
        return rows

    def add(merchant_id: str, credentials: str, *extra: str, stdin: str | None = None) -> Any:
        return cli(gateway, "accounts", "add", merchant_id, "--provider", "mpesa",
                   "--environment", "sandbox", "--credentials", credentials, *extra,
                   stdin=stdin)  # fmt: skip

    before = accounts()
    incomplete = add(merchant.id, "-", stdin='{"consumer_key": "K", "consumer_secret": "FAKE-s"}')
    assert incomplete.exit_code == 1
    assert "passkey" in incomplete.output and "FAKE-s" not in incomplete.output
    complete = tmp_path / "c.json"
    complete.write_text(json.dumps({
        "consumer_key": "FAKE-key", "consumer_secret": "FAKE-secret", "shortcode": "174379",
        "kind": "paybill", "passkey": "FAKE-passkey"}))  # fmt: skip
    wrong_host = add(merchant.id, str(complete), "--base-url", "https://api.safaricom.co.ke")
    assert wrong_host.exit_code == 1
    assert "sandbox_account_on_production_host" in wrong_host.output
    not_json = add(merchant.id, "-", stdin="consumer_key=x")
    assert not_json.exit_code == 2 and "not JSON" in not_json.output
    no_merchant = add("mer_nope", str(complete))
    assert no_merchant.exit_code == 1 and "mer_nope" in no_merchant.output
    assert accounts() == before
    bad_mode = cli(gateway, "api-keys", "create", merchant.id, "--mode", "prod")
    assert bad_mode.exit_code == 2
    assert cli(gateway, "api-keys", "revoke", "key_nope").exit_code == 1
    assert cli(gateway, "merchants", "show", "mer_nope").exit_code == 1
    shown = cli(gateway, "merchants", "show", merchant.id, "--json")
    assert [k["status"] for k in json.loads(shown.output)["api_keys"]] == ["active"]
    assert merchant.api_key not in shown.output


def test_a_merchant_with_unusable_settings_is_refused_when_made(gateway: Gateway) -> None:
    """A typo in settings used to be stored, then refuse every payment (limits) or quietly
    leave fees empty; there is no way to change settings afterwards."""

    def merchant_names() -> list[str]:
        with gateway.admin() as admin:
            return [m["name"] for m in admin.get("/admin/v1/merchants").json()["data"]]

    name = f"Typo {uuid.uuid4().hex[:6]}"
    with gateway.admin() as admin:
        refused = admin.post(
            "/admin/v1/merchants", json={"name": name, "settings": {"limits": {"KES": "10"}}}
        )
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_amount_limits", "limits.KES")
    settings = json.dumps({"platform_fees": {"mpesa": {"percent": 2.5}}})
    by_cli = cli(gateway, "merchants", "create", name, "--settings", settings)
    assert by_cli.exit_code == 1 and "platform_fees.mpesa.percent" in by_cli.output
    assert name not in merchant_names()


# ----- merchant operations in the audit log -----------------------------------------------------
def test_merchant_operations_are_audited_by_the_key_that_made_them(
    merchant_factory: Callable[..., Merchant], gateway: Gateway
) -> None:
    shop = merchant_factory(settings={"payout_approval_threshold": {"KES": "1000"}})
    with gateway.admin() as admin:
        [key] = admin.get(f"/admin/v1/merchants/{shop.id}/api-keys").json()["data"]
    with shop.client() as c:
        hook = {"url": "http://127.0.0.1:9/hook?token=FAKE-in-url", "event_types": ["*"]}
        endpoint = c.post("/v1/webhook-endpoints", json=hook).json()
        assert c.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret").status_code == 200
        assert c.delete(f"/v1/webhook-endpoints/{endpoint['id']}").status_code == 200
        link = c.post("/v1/payment-links", json={"currency": "KES", "amount": "10"},
                      headers={"Idempotency-Key": str(uuid.uuid4())}).json()  # fmt: skip
        off = c.post(f"/v1/payment-links/{link['id']}/status", json={"status": "disabled"})
        assert off.status_code == 200
        waiting = c.post("/v1/payouts", headers={"Idempotency-Key": str(uuid.uuid4())}, json={
            "amount": "2000", "currency": "KES", "phone": "0708374149", "reference": "po-a",
            "reason": "Cashback"}).json()  # fmt: skip
        assert c.post(f"/v1/payouts/{waiting['id']}/cancel").status_code == 200
        paid = shop.pay(c, amount="10", currency="KES", phone="0708374149").json()
        assert shop.wait_final(paid["id"])["status"] == "succeeded"
        refund = c.post(f"/v1/payments/{paid['id']}/refunds", json={"reason": "damaged"},
                        headers={"Idempotency-Key": str(uuid.uuid4())})  # fmt: skip
        assert refund.status_code == 201, refund.text
    with gateway.admin() as admin:
        second = admin.post(f"/admin/v1/merchants/{shop.id}/api-keys", json={"mode": "test"})
    with gateway.client(second.json()["key"]) as other:
        approved = other.post("/v1/payouts", headers={"Idempotency-Key": str(uuid.uuid4())}, json={
            "amount": "2000", "currency": "KES", "phone": "0708374149", "reference": "po-b",
            "reason": "Cashback"}).json()  # fmt: skip
    with shop.client() as c:
        assert c.post(f"/v1/payouts/{approved['id']}/approve").status_code == 200
    entries = audit(gateway, shop.id)
    by_action = {e["action"]: e for e in entries}
    assert (by_action["payout.approved"]["target"], by_action["payout.approved"]["actor"]) == (
        approved["id"], key["id"])  # fmt: skip
    for action, target in [
        ("webhook_endpoint.created", endpoint["id"]),
        ("webhook_endpoint.secret_rotated", endpoint["id"]),
        ("webhook_endpoint.disabled", endpoint["id"]),
        ("payment_link.disabled", link["id"]),
        ("payout.cancelled", waiting["id"]),
        ("refund.requested", refund.json()["id"]),
    ]:
        assert by_action[action]["target"] == target, action
        assert by_action[action]["actor"] == key["id"], action
    assert by_action["refund.requested"]["reason"] == "damaged"
    assert by_action["webhook_endpoint.created"]["detail"]["host"] == "127.0.0.1"
    assert "FAKE-in-url" not in json.dumps(entries)
