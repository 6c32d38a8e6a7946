"""Reconciliation end to end: real payments through the gateway and the simulator, the
statements the simulator exports, salted with planted discrepancies — each one is found, and
nothing else."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from lipwa.cli import app as cli_app
from lipwa.clock import utcnow
from lipwa.reconcile.scheduled import reconcile_due, run_id_for
from lipwa.reconcile.statements import EAT
from lipwa.simulator.core import Simulator
from lipwa.store.db import make_engine, make_sessionmaker
from lipwa.store.tables import ReconciliationRun
from tests.gateway.conftest import Gateway, Merchant, db_rows, events_for
from tests.ops_support import run_db


# ----- helpers ------------------------------------------------------------------------------------
def pay(merchant: Merchant, amount: str, currency: str, phone: str) -> dict[str, Any]:
    response = merchant.pay(
        amount=amount, currency=currency, phone=phone, reference=f"r-{uuid.uuid4().hex[:8]}"
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def paid(merchant: Merchant, amount: str, currency: str, phone: str) -> dict[str, Any]:
    final = merchant.wait_final(pay(merchant, amount, currency, phone)["id"])
    assert final["status"] == "succeeded", final
    return final


def statement(sim_url: str, path: str, rows: int, **params: str) -> list[list[str]]:
    """The simulator's export once it holds ``rows`` lines, as CSV cells (header first)."""
    deadline = time.monotonic() + 20
    while True:
        text = httpx.get(f"{sim_url}/_sim/statements/{path}", params=params).text
        cells = list(csv.reader(io.StringIO(text)))
        if len(cells) - 1 >= rows:
            return cells
        assert time.monotonic() < deadline, f"statement has {len(cells) - 1} rows"
        time.sleep(0.1)


def write_csv(path: Path, cells: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(cells)
    return path


def cli_env(gateway: Gateway) -> dict[str, str]:
    settings = gateway.settings
    assert settings.encryption_keys is not None
    return {
        "LIPWA_DATABASE_URL": settings.database_url,
        "LIPWA_ENCRYPTION_KEYS": settings.encryption_keys.get_secret_value(),
        "LIPWA_PUBLIC_URL": settings.public_url,
        "LIPWA_LOG_JSON": "false",
    }


def by_subject(items: list[dict[str, Any]]) -> dict[str, str]:
    """payment id or statement receipt → the bucket it landed in."""
    found: dict[str, str] = {}
    for item in items:
        if item.get("payment_id"):
            found[item["payment_id"]] = item["kind"]
        if item.get("statement"):
            found[item["statement"]["receipt"]] = item["kind"]
    return found


def set_faults(sim_url: str, **faults: float) -> None:
    httpx.put(f"{sim_url}/_sim/faults", json=faults).raise_for_status()


def unknown_payment(merchant: Merchant, sim_url: str, gateway: Gateway, phone: str) -> str:
    """A payment the provider took but Lipwa could not learn about: the answer to the STK push
    comes after the gateway's read timeout and the callback is dropped."""
    timeout = gateway.settings.provider_read_timeout_s
    set_faults(sim_url, answer_delay_ms=(timeout + 1) * 1000, callback_drop_pct=100)
    payment = pay(merchant, "15", "KES", phone)
    assert payment["status"] == "unknown"
    set_faults(sim_url, answer_delay_ms=0)
    return str(payment["id"])


def col(cells: list[list[str]], name: str) -> int:
    return cells[0].index(name)


def row_of(cells: list[list[str]], column: str, value: str) -> list[str]:
    i = col(cells, column)
    return next(r for r in cells[1:] if r[i] == value)


# ----- M-Pesa -------------------------------------------------------------------------------------
def test_mpesa_statement_finds_each_planted_discrepancy_and_nothing_else(
    merchant: Merchant, sim: Simulator, sim_url: str, gateway: Gateway, tmp_path: Path
) -> None:
    ok = paid(merchant, "11", "KES", "0708374201")
    deleted = paid(merchant, "12", "KES", "0708374202")
    amount_changed = paid(merchant, "13", "KES", "0708374203")
    phone_changed = paid(merchant, "14", "KES", "0708374204")
    unknown_id = unknown_payment(merchant, sim_url, gateway, "0708374205")

    shortcode = merchant.accounts["mpesa"]["config"]["shortcode"]
    cells = statement(sim_url, "mpesa.csv", 5, shortcode=shortcode)
    assert len(cells) == 6  # header + the five payments the provider settled
    receipt, paid_in, party = (
        col(cells, c) for c in ("Receipt No.", "Paid In", "Other Party Info")
    )
    unknown_receipt = next(r[receipt] for r in cells[1:] if r[party].startswith("254708374205"))
    cells.remove(row_of(cells, "Receipt No.", deleted["receipt"]))
    row_of(cells, "Receipt No.", amount_changed["receipt"])[paid_in] = "31.00"
    changed = row_of(cells, "Receipt No.", phone_changed["receipt"])
    changed[party] = changed[party].replace("254708374204", "254722000004")
    added = list(row_of(cells, "Receipt No.", ok["receipt"]))
    added[receipt], added[paid_in], added[party] = "ZZZ0000001", "99.00", "254708374299 - A B"
    cells.append(added)
    path = write_csv(tmp_path / "mpesa.csv", cells)

    output = tmp_path / "report.json"
    result = CliRunner().invoke(
        cli_app,
        ["reconcile", "--account", merchant.accounts["mpesa"]["id"], "--statement", str(path),
         "--format", "json", "--output", str(output)],
        env=cli_env(gateway),
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # 1: discrepancies found
    report = json.loads(output.read_text())
    assert by_subject(report["items"]) == {
        ok["id"]: "matched", ok["receipt"]: "matched",
        deleted["id"]: "missing_at_provider",
        amount_changed["id"]: "amount_mismatch", amount_changed["receipt"]: "amount_mismatch",
        phone_changed["id"]: "party_mismatch", phone_changed["receipt"]: "party_mismatch",
        unknown_id: "unknown_resolved", unknown_receipt: "unknown_resolved",
        "ZZZ0000001": "missing_in_lipwa",
    }  # fmt: skip
    counts = report["summary"]["counts"]
    assert {k: v for k, v in counts.items() if v} == {
        "matched": 1, "missing_at_provider": 1, "amount_mismatch": 1, "party_mismatch": 1,
        "unknown_resolved": 1, "missing_in_lipwa": 1,
    }  # fmt: skip
    assert report["summary"]["critical"] == 1 and report["summary"]["settled"] == 1

    # The statement proved the unknown payment paid: it is now succeeded, with the receipt.
    with merchant.client() as c:
        settled = c.get(f"/v1/payments/{unknown_id}").json()
    assert (settled["status"], settled["receipt"], settled["resolved_by"]) == (
        "succeeded", unknown_receipt, "reconciliation",
    )  # fmt: skip
    assert events_for(merchant, unknown_id) == [
        "payment.created", "payment.unknown", "payment.succeeded",
    ]  # fmt: skip
    fees = db_rows(
        gateway.settings.database_url,
        "SELECT provider_fee, platform_fee FROM payments WHERE id = :id",
        id=unknown_id,
    )[0]
    assert fees["provider_fee"] is not None and fees["platform_fee"] is not None

    # Stored and readable over the admin API, a page at a time.
    run_id = report["id"]
    with gateway.admin() as admin:
        runs = admin.get(
            "/admin/v1/reconciliations", params={"account_id": merchant.accounts["mpesa"]["id"]}
        ).json()
        assert [r["id"] for r in runs["data"]] == [run_id]
        assert runs["data"][0]["status"] == "done"
        seen: list[dict[str, Any]] = []
        after = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if after is not None:
                params["after"] = after
            page = admin.get(f"/admin/v1/reconciliations/{run_id}", params=params).json()
            seen.extend(page["items"]["data"])
            after = page["items"]["next_after"]
            if after is None:
                break
        assert by_subject(seen) == by_subject(report["items"])
        critical = admin.get(
            f"/admin/v1/reconciliations/{run_id}", params={"kind": "missing_at_provider"}
        ).json()["items"]["data"]
        assert [(i["payment_id"], i["critical"]) for i in critical] == [(deleted["id"], True)]
        assert admin.get("/admin/v1/reconciliations/rec_nope").status_code == 404

    # Run again: the unknown payment is now an ordinary match, the planted ones remain.
    again = CliRunner().invoke(
        cli_app,
        ["reconcile", "--account", merchant.accounts["mpesa"]["id"], "--statement", str(path)],
        env=cli_env(gateway),
    )
    assert again.exit_code == 1, again.output
    assert "missing_at_provider" in again.output and "To look at" in again.output


# ----- MoMo ---------------------------------------------------------------------------------------
def test_momo_export_finds_each_planted_discrepancy_and_nothing_else(
    merchant_factory: Callable[..., Merchant], sim_url: str, gateway: Gateway, tmp_path: Path
) -> None:
    merchant = merchant_factory(momo_currency="RWF")
    ok = paid(merchant, "100", "RWF", "+250788123401")
    deleted = paid(merchant, "200", "RWF", "+250788123402")
    amount_changed = paid(merchant, "300", "RWF", "+250788123403")
    party_changed = paid(merchant, "400", "RWF", "+250788123404")

    cells = statement(sim_url, "momo.csv", 4, product="collection")
    assert len(cells) == 5
    ident, amount, sender = col(cells, "Id"), col(cells, "Amount"), col(cells, "From")
    cells.remove(row_of(cells, "Id", deleted["receipt"]))
    row_of(cells, "Id", amount_changed["receipt"])[amount] = "3000"
    row_of(cells, "Id", party_changed["receipt"])[sender] = "250788999999"
    added = list(row_of(cells, "Id", ok["receipt"]))
    added[ident], added[col(cells, "External Transaction Id")] = "9999999999", "somebody-else"
    cells.append(added)
    path = write_csv(tmp_path / "momo.csv", cells)

    result = CliRunner().invoke(
        cli_app,
        ["reconcile", "--account", merchant.accounts["momo"]["id"], "--statement", str(path),
         "--format", "csv"],
        env=cli_env(gateway),
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    lines = list(csv.DictReader(io.StringIO(result.stdout)))
    found = {(r["kind"], r["payment_id"] or r["receipt"]) for r in lines}
    assert found == {
        ("matched", ok["id"]),
        ("missing_at_provider", deleted["id"]),
        ("amount_mismatch", amount_changed["id"]),
        ("party_mismatch", party_changed["id"]),
        ("missing_in_lipwa", "9999999999"),
    }
    mismatch = next(r for r in lines if r["kind"] == "amount_mismatch")
    assert (mismatch["statement_amount"], mismatch["lipwa_amount"]) == ("3000", "300")
    assert next(r for r in lines if r["kind"] == "missing_at_provider")["critical"] == "yes"


# ----- bad input ----------------------------------------------------------------------------------
def test_a_malformed_statement_is_rejected_naming_the_line_and_nothing_is_written(
    merchant: Merchant, sim_url: str, gateway: Gateway, tmp_path: Path
) -> None:
    first = paid(merchant, "11", "KES", "0708374201")
    paid(merchant, "12", "KES", "0708374202")
    shortcode = merchant.accounts["mpesa"]["config"]["shortcode"]
    cells = statement(sim_url, "mpesa.csv", 2, shortcode=shortcode)
    cells[2][col(cells, "Completion Time")] = "yesterday at noon"
    path = write_csv(tmp_path / "broken.csv", cells)
    account = merchant.accounts["mpesa"]["id"]
    env = cli_env(gateway)

    result = CliRunner().invoke(cli_app, ["reconcile", "--account", account, "--statement",
                                          str(path)], env=env)  # fmt: skip
    assert result.exit_code == 2
    assert "line 3: Completion Time 'yesterday at noon' is not a time" in result.output
    # A MoMo account given an M-Pesa statement, and the wrong day format: refused too.
    good = write_csv(tmp_path / "good.csv", statement(sim_url, "mpesa.csv", 2, shortcode=shortcode))
    wrong = CliRunner().invoke(cli_app, ["reconcile", "--account", merchant.accounts["momo"]["id"],
                                         "--statement", str(good)], env=env)  # fmt: skip
    assert wrong.exit_code == 2 and "M-Pesa organisation statement" in wrong.output
    bad_day = CliRunner().invoke(cli_app, ["reconcile", "--account", account, "--statement",
                                           str(good), "--date", "31-01-2026"], env=env)  # fmt: skip
    assert bad_day.exit_code == 2 and "2026-01-31" in bad_day.output
    far_day = CliRunner().invoke(cli_app, ["reconcile", "--account", account, "--statement",
                                           str(good), "--date", "9999-12-31"], env=env)  # fmt: skip
    assert far_day.exit_code == 2 and "Traceback" not in far_day.output
    assert "the day 9999-12-31 is not between 2000-01-01 and 2100-12-31" in far_day.output
    args = ["reconcile", "--account", account, "--statement", str(good), "--date", "2026-01-31"]
    other_day = CliRunner().invoke(cli_app, args, env=env)
    assert other_day.exit_code == 2
    assert "no row of the statement falls on 2026-01-31" in other_day.output
    # An --output that cannot be written is refused before the run is stored.
    nowhere = tmp_path / "no-such-dir" / "report.json"
    unwritable = CliRunner().invoke(cli_app, ["reconcile", "--account", account, "--statement",
                                              str(good), "--output", str(nowhere)],
                                    env=env)  # fmt: skip
    assert unwritable.exit_code == 2 and "Traceback" not in unwritable.output
    assert "cannot write to" in unwritable.output and not nowhere.parent.exists()
    runs = db_rows(
        gateway.settings.database_url,
        "SELECT count(*) AS n FROM reconciliation_runs WHERE merchant_id = :m",
        m=merchant.id,
    )
    assert runs[0]["n"] == 0
    with merchant.client() as c:
        assert c.get(f"/v1/payments/{first['id']}").json()["resolved_by"] == "callback"


def test_a_run_list_cursor_without_a_time_zone_is_refused(gateway: Gateway) -> None:
    for raw in (b"2026-01-01T00:00:00|rec_x", b"2026-01-01|rec_x", b"yesterday|rec_x"):
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        with gateway.admin() as admin:
            response = admin.get("/admin/v1/reconciliations", params={"cursor": cursor})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error", "invalid_cursor", "cursor",
        )  # fmt: skip
    aware = base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|rec_x").decode()
    with gateway.admin() as admin:
        assert admin.get("/admin/v1/reconciliations", params={"cursor": aware}).status_code == 200


# ----- the daily run ------------------------------------------------------------------------------
def _daily(database_url: str, folder: Path | None, now: datetime) -> int:
    async def run() -> int:
        engine = make_engine(database_url, pool_size=2)
        try:
            async with httpx.AsyncClient() as http:
                return await reconcile_due(make_sessionmaker(engine), http, folder, now=now)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _opt(gateway: Gateway, account_id: str, daily: bool) -> None:
    with gateway.admin() as admin:
        response = admin.put(
            f"/admin/v1/accounts/{account_id}/reconciliation", json={"daily": daily}
        )
        assert response.status_code == 200, response.text


def test_daily_run_reads_the_drop_folder_or_the_simulator_once_per_day(
    merchant_factory: Callable[..., Merchant], sim_url: str, gateway: Gateway, tmp_path: Path
) -> None:
    merchant = merchant_factory(momo_currency="RWF")
    mpesa, momo = merchant.accounts["mpesa"]["id"], merchant.accounts["momo"]["id"]
    kept = paid(merchant, "21", "KES", "0708374221")
    lost = paid(merchant, "22", "KES", "0708374222")
    momo_paid = paid(merchant, "100", "RWF", "+250788123421")
    url = gateway.settings.database_url

    # M-Pesa: the operator dropped yesterday's statement (with one line missing) in the folder.
    shortcode = merchant.accounts["mpesa"]["config"]["shortcode"]
    cells = statement(sim_url, "mpesa.csv", 2, shortcode=shortcode)
    cells.remove(row_of(cells, "Receipt No.", lost["receipt"]))
    day = datetime.fromisoformat(cells[1][col(cells, "Completion Time")]).date()
    (tmp_path / mpesa).mkdir()
    write_csv(tmp_path / mpesa / f"{day.isoformat()}.csv", cells)
    next_morning = datetime.combine(day + timedelta(days=1), clock_time(7, 0), EAT)
    _opt(gateway, mpesa, True)
    try:
        assert _daily(url, tmp_path, next_morning) == 1
        assert _daily(url, tmp_path, next_morning) == 0  # once per day
    finally:
        _opt(gateway, mpesa, False)
    with gateway.admin() as admin:
        run = admin.get(f"/admin/v1/reconciliations/{run_id_for(mpesa, day)}").json()
    assert run["statement_date"] == day.isoformat() and run["source"].startswith("scheduled: ")
    assert by_subject(run["items"]["data"]) == {
        kept["id"]: "matched", kept["receipt"]: "matched", lost["id"]: "missing_at_provider",
    }  # fmt: skip

    # MoMo: no file, but a simulator account: the job fetches the simulator's export.
    momo_day = datetime.now(UTC).date()
    _opt(gateway, momo, True)
    try:
        morning = datetime.combine(momo_day + timedelta(days=1), clock_time(4, 0), UTC)
        assert _daily(url, tmp_path, morning) == 1
    finally:
        _opt(gateway, momo, False)
    with gateway.admin() as admin:
        run = admin.get(f"/admin/v1/reconciliations/{run_id_for(momo, momo_day)}").json()
    assert "simulator" in run["source"] and run["status"] == "done"
    assert by_subject(run["items"]["data"]) == {
        momo_paid["id"]: "matched", momo_paid["receipt"]: "matched",
    }  # fmt: skip


def test_a_statement_dropped_days_late_is_still_reconciled(
    merchant: Merchant, sim_url: str, gateway: Gateway, tmp_path: Path
) -> None:
    """The operator downloaded Monday's export on Thursday: the daily job still reconciles
    Monday, once, and makes no run for the days in between that have no file."""
    mpesa = merchant.accounts["mpesa"]["id"]
    sale = paid(merchant, "24", "KES", "0708374224")
    shortcode = merchant.accounts["mpesa"]["config"]["shortcode"]
    cells = statement(sim_url, "mpesa.csv", 1, shortcode=shortcode)
    day = datetime.fromisoformat(cells[1][col(cells, "Completion Time")]).date()
    url = gateway.settings.database_url
    thursday = datetime.combine(day + timedelta(days=3), clock_time(7, 0), EAT)
    _opt(gateway, mpesa, True)
    try:
        assert _daily(url, tmp_path, thursday) == 1  # Wednesday, from the simulator
        (tmp_path / mpesa).mkdir()
        write_csv(tmp_path / mpesa / f"{day.isoformat()}.csv", cells)
        assert _daily(url, tmp_path, thursday) == 1  # Monday's file, dropped now
        assert _daily(url, tmp_path, thursday) == 0
    finally:
        _opt(gateway, mpesa, False)
    with gateway.admin() as admin:
        run = admin.get(f"/admin/v1/reconciliations/{run_id_for(mpesa, day)}").json()
    assert run["statement_date"] == day.isoformat() and run["status"] == "done"
    assert f"{day.isoformat()}.csv" in run["source"]
    assert by_subject(run["items"]["data"]) == {sale["id"]: "matched", sale["receipt"]: "matched"}
    days = db_rows(
        url, "SELECT statement_date FROM reconciliation_runs WHERE account_id = :a", a=mpesa
    )
    assert sorted(r["statement_date"] for r in days) == [
        day.isoformat(), (day + timedelta(days=2)).isoformat(),
    ]  # fmt: skip


def test_a_daily_run_that_died_with_its_process_is_made_again(
    merchant: Merchant, sim_url: str, gateway: Gateway, tmp_path: Path
) -> None:
    """A deploy cancelled the worker mid-run: the day's run stayed "running". A young one may
    still be at work and is left alone; one an hour old died, and the day is reconciled."""
    mpesa = merchant.accounts["mpesa"]["id"]
    paid(merchant, "23", "KES", "0708374223")
    shortcode = merchant.accounts["mpesa"]["config"]["shortcode"]
    cells = statement(sim_url, "mpesa.csv", 1, shortcode=shortcode)
    day = datetime.fromisoformat(cells[1][col(cells, "Completion Time")]).date()
    (tmp_path / mpesa).mkdir()
    write_csv(tmp_path / mpesa / f"{day.isoformat()}.csv", cells)
    next_morning = datetime.combine(day + timedelta(days=1), clock_time(7, 0), EAT)
    run_id = run_id_for(mpesa, day)
    url = gateway.settings.database_url

    def left_running(minutes_ago: int) -> None:
        async def write(session: AsyncSession) -> None:
            await session.execute(delete(ReconciliationRun).where(ReconciliationRun.id == run_id))
            session.add(ReconciliationRun(
                id=run_id, merchant_id=merchant.id, account_id=mpesa,
                statement_date=day.isoformat(), source="scheduled: died", status="running",
                summary={}, created_at=utcnow() - timedelta(minutes=minutes_ago),
                finished_at=None,
            ))  # fmt: skip

        run_db(url, write)

    _opt(gateway, mpesa, True)
    try:
        left_running(1)
        assert _daily(url, tmp_path, next_morning) == 0  # may still be at work
        left_running(90)
        assert _daily(url, tmp_path, next_morning) == 1
    finally:
        _opt(gateway, mpesa, False)
    with gateway.admin() as admin:
        run = admin.get(f"/admin/v1/reconciliations/{run_id}").json()
    assert run["status"] == "done" and run["source"] != "scheduled: died"


# ----- receipts ---------------------------------------------------------------------------------
def test_a_payment_settled_by_status_query_gets_its_receipt_from_the_statement(
    merchant: Merchant, sim_url: str, gateway: Gateway, tmp_path: Path
) -> None:
    phone = "254708374231"
    body = {"provider": "mpesa", "phone": phone, "outcome": "no_callback"}
    httpx.put(f"{sim_url}/_sim/scenario", json=body).raise_for_status()
    payment = merchant.wait_final(pay(merchant, "31", "KES", "0" + phone[3:])["id"], timeout=20)
    assert (payment["status"], payment["resolved_by"], payment["receipt"]) == (
        "succeeded", "query", None,  # Daraja's STK query carries no receipt
    )  # fmt: skip
    shortcode = merchant.accounts["mpesa"]["config"]["shortcode"]
    cells = statement(sim_url, "mpesa.csv", 1, shortcode=shortcode)
    path = write_csv(tmp_path / "mpesa.csv", cells)
    result = CliRunner().invoke(
        cli_app,
        ["reconcile", "--account", merchant.accounts["mpesa"]["id"], "--statement", str(path),
         "--format", "json"],
        env=cli_env(gateway),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"]["receipts_added"] == 1
    [item] = report["items"]
    assert (item["kind"], item["matched_by"], item["receipt_added"]) == (
        "matched", "amount_party_time", True,
    )  # fmt: skip
    with merchant.client() as c:
        after = c.get(f"/v1/payments/{payment['id']}").json()
    assert after["receipt"] == cells[1][0] and after["resolved_by"] == "query"
