"""``lipwa demo``: the simulator, the gateway on SQLite and a demo merchant, in one process."""

from __future__ import annotations

import os
import secrets
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from lipwa.vault import generate_key_text


def _load_or_create_env(data_dir: Path) -> dict[str, str]:
    """Demo-only secrets, generated once and kept in data_dir (never in the repository)."""
    path = data_dir / "demo.env"
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            if name and value:
                values[name.strip()] = value.strip()
    values.setdefault("LIPWA_ENCRYPTION_KEYS", generate_key_text("v1"))
    values.setdefault("LIPWA_ADMIN_TOKEN", secrets.token_urlsafe(24))
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return values


def bootstrap_demo_merchant(
    gateway: str, admin_token: str, simulator: str, name: str = "Demo shop"
) -> dict[str, Any]:
    """Create a merchant with M-Pesa and MoMo sandbox accounts on the simulator; a test key."""
    creds = httpx.get(f"{simulator}/_sim/credentials", timeout=30).json()
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=gateway, headers=headers, timeout=30) as admin:
        merchant = admin.post("/admin/v1/merchants", json={"name": name}).raise_for_status().json()
        mpesa, momo = creds["mpesa"], creds["momo"]
        admin.post(
            f"/admin/v1/merchants/{merchant['id']}/accounts",
            json={
                "provider": "mpesa",
                "environment": "sandbox",
                "label": "Paybill 174379 (simulator)",
                "base_url": simulator,
                "credentials": {
                    "consumer_key": mpesa["consumer_key"],
                    "consumer_secret": mpesa["consumer_secret"],
                    "shortcode": mpesa["paybill"]["shortcode"],
                    "kind": "paybill",
                    "passkey": mpesa["paybill"]["passkey"],
                },
            },
        ).raise_for_status()
        admin.post(
            f"/admin/v1/merchants/{merchant['id']}/accounts",
            json={
                "provider": "momo",
                "environment": "sandbox",
                "label": "MoMo sandbox (simulator)",
                "base_url": simulator,
                "credentials": {
                    "api_user": momo["api_user"],
                    "api_key": momo["api_key"],
                    "subscription_keys": momo["subscription_keys"],
                    "target_environment": "sandbox",
                    "currency": "EUR",
                },
            },
        ).raise_for_status()
        key = (
            admin.post(f"/admin/v1/merchants/{merchant['id']}/api-keys", json={"mode": "test"})
            .raise_for_status()
            .json()
        )
    return {"merchant": merchant, "api_key": key["key"]}


def _watch_payment(gateway: str, api_key: str, console: Console) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": str(uuid.uuid4())}
    body = {
        "amount": "10",
        "currency": "KES",
        "phone": "0708374149",
        "reference": "demo-1",
        "description": "Demo payment",
    }
    payment = httpx.post(f"{gateway}/v1/payments", json=body, headers=headers, timeout=60).json()
    console.print(f"  {payment.get('id')}: {payment.get('status')}")
    deadline = time.monotonic() + 30
    while payment.get("status") in {"pending", "unknown"} and time.monotonic() < deadline:
        time.sleep(0.5)
        payment = httpx.get(
            f"{gateway}/v1/payments/{payment['id']}",
            headers={"Authorization": headers["Authorization"]},
            timeout=30,
        ).json()
    console.print(
        f"  {payment.get('id')}: [bold]{payment.get('status')}[/bold]"
        f"  receipt {payment.get('receipt')}"
    )
    return payment


def run_demo(
    *,
    port: int,
    simulator_port: int,
    data_dir: Path,
    console: Console,
    exit_after_payment: bool = False,
) -> dict[str, Any]:
    from lipwa.api.app import create_app
    from lipwa.config import Settings
    from lipwa.observability import configure_logging
    from lipwa.simulator.app import build_app
    from lipwa.simulator.core import SimSettings, Simulator
    from lipwa.simulator.testing import serve_in_thread
    from lipwa.store.migrate import upgrade

    data_dir.mkdir(parents=True, exist_ok=True)
    env = _load_or_create_env(data_dir)
    gateway_url = f"http://localhost:{port}"
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{(data_dir / 'demo.db').resolve()}",
        public_url=gateway_url,
        admin_token=env["LIPWA_ADMIN_TOKEN"],
        encryption_keys=env["LIPWA_ENCRYPTION_KEYS"],
        log_json=False,
        log_level=os.environ.get("LIPWA_LOG_LEVEL", "WARNING"),
    )
    configure_logging(settings.log_level, json_output=False)
    upgrade(settings.database_url)
    sim = Simulator(settings=SimSettings(prompt_seconds=2.0, momo_callback_host="localhost"))
    with ExitStack() as stack:
        simulator_url = stack.enter_context(serve_in_thread(build_app(sim), port=simulator_port))
        gateway = stack.enter_context(serve_in_thread(create_app(settings), port=port))
        gateway = gateway_url
        demo = bootstrap_demo_merchant(gateway, env["LIPWA_ADMIN_TOKEN"], simulator_url)
        console.print(
            f"[bold green]Lipwa is running[/bold green] at {gateway}  (docs: {gateway}/docs)"
        )
        console.print(f"Simulator (Daraja + MoMo) at {simulator_url}  (control: /_sim/)")
        console.print(f"Demo merchant {demo['merchant']['id']}, test API key:")
        console.print(f"  {demo['api_key']}")
        console.print("\nA first payment, M-Pesa STK push to the sandbox test number:")
        payment = _watch_payment(gateway, demo["api_key"], console)
        console.print("\nTry one yourself (ending 1032 = payer cancels, 0001 = not enough money):")
        console.print(
            f"  curl -s {gateway}/v1/payments -H 'Authorization: Bearer {demo['api_key']}' "
            "-H \"Idempotency-Key: $(date +%s%N)\" -H 'Content-Type: application/json' "
            '-d \'{"amount": "50", "currency": "KES", "phone": "0712341032", '
            '"reference": "order-1"}\'',
            soft_wrap=True,
        )
        console.print(
            f"  curl -s {gateway}/v1/payments -H 'Authorization: Bearer {demo['api_key']}'",
            soft_wrap=True,
        )
        if exit_after_payment:
            return {"payment": payment, **demo}
        console.print(
            f"\nDashboard: {gateway}/signin with the admin token LIPWA_ADMIN_TOKEN from "
            f"{data_dir / 'demo.env'} (the demo's database: {data_dir / 'demo.db'})",
            soft_wrap=True,
        )
        console.print("\nPress Ctrl-C to stop.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print("Stopping.")
    return {"payment": payment, **demo}
