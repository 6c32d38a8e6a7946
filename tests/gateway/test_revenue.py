"""Fees fixed with the success, and the revenue report over the API and the CLI."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from lipwa.cli import app as cli_app
from tests.gateway.conftest import Gateway, Merchant, db_rows
from tests.gateway.money_support import wait_status
from tests.gateway.test_reconciliation import cli_env

FEES = {
    "platform_fees": {
        "mpesa": {"percent": "2.0", "fixed": "1"},
        "momo": {"percent": "1.5", "fixed": "0"},
    }
}


def pay(merchant: Merchant, amount: str, currency: str, phone: str) -> dict[str, Any]:
    response = merchant.pay(
        amount=amount, currency=currency, phone=phone, reference=f"r-{uuid.uuid4().hex[:8]}"
    )
    assert response.status_code == 201, response.text
    return merchant.wait_final(response.json()["id"])


def fees_of(gateway: Gateway, payment_id: str) -> tuple[Decimal | None, Decimal | None]:
    row = db_rows(
        gateway.settings.database_url,
        "SELECT status, provider_fee, platform_fee FROM payments WHERE id = :id",
        id=payment_id,
    )[0]
    assert row["status"] in {"succeeded", "failed"}
    as_decimal = [None if v is None else Decimal(str(v)) for v in (row["provider_fee"],
                                                                  row["platform_fee"])]  # fmt: skip
    return as_decimal[0], as_decimal[1]


def test_fees_are_stored_on_success_and_the_revenue_report_adds_up(
    merchant_factory: Callable[..., Merchant], gateway: Gateway
) -> None:
    merchant = merchant_factory(momo_currency="RWF", settings=FEES)
    other = merchant_factory(momo_currency="RWF")  # no platform fee; must not leak in
    big = pay(merchant, "1000", "KES", "0708374301")
    small = pay(merchant, "50", "KES", "0708374302")
    declined = pay(merchant, "70", "KES", "0708371032")  # the payer cancels
    momo = pay(merchant, "1001", "RWF", "+250788123431")
    pay(other, "500", "KES", "0708374303")
    assert [p["status"] for p in (big, small, declined, momo)] == [
        "succeeded", "succeeded", "failed", "succeeded",
    ]  # fmt: skip

    # Fixed when the payment succeeded (paybill estimate band (500, 1000] → KES 10;
    # 2 % + KES 1 platform fee; MoMo 1 % estimate and 1.5 %, whole RWF, half up).
    assert fees_of(gateway, big["id"]) == (Decimal(10), Decimal(21))
    assert fees_of(gateway, small["id"]) == (Decimal(0), Decimal(2))
    assert fees_of(gateway, declined["id"]) == (None, None)
    assert fees_of(gateway, momo["id"]) == (Decimal(10), Decimal(15))
    # The small one is refunded in full: its money comes off net, its fees do not.
    with merchant.client() as c:
        refund = c.post(f"/v1/payments/{small['id']}/refunds", json={"reason": "returned"},
                        headers={"Idempotency-Key": str(uuid.uuid4())}).json()  # fmt: skip
    assert wait_status(merchant, f"/v1/refunds/{refund['id']}")["status"] == "succeeded"

    today = datetime.now(UTC).date()
    window = {"from": (today - timedelta(days=1)).isoformat(),
              "to": (today + timedelta(days=1)).isoformat()}  # fmt: skip
    with merchant.client() as c:
        mine = c.get("/v1/reports/revenue", params=window)
        assert mine.status_code == 200, mine.text
        report = mine.json()
        assert c.get("/v1/reports/revenue", params={**window, "to": "soon"}).status_code == 400
    assert report["mode"] == "test" and {t["merchant_id"] for t in report["totals"]} == {
        merchant.id
    }
    totals = {t["currency"]: t for t in report["totals"]}
    kes, rwf = totals["KES"], totals["RWF"]
    assert (kes["payments"], kes["succeeded"], kes["failed"], kes["success_rate"]) == (
        3, 2, 1, "0.6667",
    )  # fmt: skip
    assert (kes["gross"], kes["provider_fees"], kes["platform_fees"], kes["net"]) == (
        "1050.00", "10.00", "23.00", "967.00",
    )  # fmt: skip
    assert (kes["refunds"], kes["refunded"], rwf["refunds"]) == (1, "50.00", 0)
    assert (rwf["gross"], rwf["provider_fees"], rwf["platform_fees"], rwf["net"]) == (
        "1001", "10", "15", "976",
    )  # fmt: skip
    assert sum(line["succeeded"] for line in report["data"]) == 3

    # The operator's view: every merchant unless filtered, live money unless asked for test.
    with gateway.admin() as admin:
        live = admin.get("/admin/v1/reports/revenue", params={**window, "merchant_id": merchant.id})
        assert live.json()["data"] == []
        test = admin.get(
            "/admin/v1/reports/revenue",
            params={**window, "merchant_id": merchant.id, "mode": "test"},
        ).json()
        assert test["totals"] == report["totals"]
        everyone = admin.get("/admin/v1/reports/revenue", params={**window, "mode": "test"}).json()
        assert {merchant.id, other.id} <= {t["merchant_id"] for t in everyone["totals"]}

    settings = gateway.settings
    assert settings.encryption_keys is not None
    env = {
        "LIPWA_DATABASE_URL": settings.database_url,
        "LIPWA_ENCRYPTION_KEYS": settings.encryption_keys.get_secret_value(),
        "LIPWA_PUBLIC_URL": settings.public_url,
        "LIPWA_LOG_JSON": "false",
    }
    args = ["report", "revenue", "--from", window["from"], "--to", window["to"],
            "--merchant", merchant.id, "--mode", "test"]  # fmt: skip
    as_json = CliRunner().invoke(cli_app, [*args, "--format", "json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["totals"] == report["totals"]
    as_csv = CliRunner().invoke(cli_app, [*args, "--format", "csv"], env=env)
    assert as_csv.exit_code == 0 and as_csv.stdout.startswith("merchant_id,currency,day,")
    as_table = CliRunner().invoke(cli_app, args, env=env)
    assert as_table.exit_code == 0 and "967.00" in as_table.stdout, as_table.stdout


def test_a_day_too_far_for_a_report_is_refused_by_the_api_and_the_cli(
    merchant: Merchant, gateway: Gateway
) -> None:
    far = {"from": "9999-12-31", "to": "9999-12-31"}
    with merchant.client() as c:
        mine = c.get("/v1/reports/revenue", params={"from": "0001-01-01", "to": "0001-01-01"})
    with gateway.admin() as admin:
        everyone = admin.get("/admin/v1/reports/revenue", params=far)
    for response, param in ((mine, "from"), (everyone, "from")):
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error", "invalid_date", param,
        )  # fmt: skip
        assert "2000-01-01 and 2100-12-31" in error["message"]
    with gateway.admin() as admin:
        late = admin.get("/admin/v1/reports/revenue", params={**far, "from": "2026-01-01"})
    assert late.json()["error"]["param"] == "to"

    result = CliRunner().invoke(
        cli_app,
        ["report", "revenue", "--from", far["from"], "--to", far["to"]],
        env=cli_env(gateway),
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--from must be between 2000-01-01 and 2100-12-31" in result.output


def test_a_report_output_that_cannot_be_written_is_refused(
    gateway: Gateway, tmp_path: Path
) -> None:
    nowhere = tmp_path / "no-such-dir" / "revenue.csv"
    result = CliRunner().invoke(
        cli_app,
        ["report", "revenue", "--from", "2026-01-01", "--to", "2026-01-01", "--format", "csv",
         "--output", str(nowhere)],
        env=cli_env(gateway),
    )  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot write to" in result.output and not nowhere.parent.exists()
