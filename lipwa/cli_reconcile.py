"""``lipwa reconcile`` and ``lipwa report revenue``."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from lipwa.config import Settings
from lipwa.domain.errors import DomainError
from lipwa.errors import ApiError
from lipwa.observability import configure_logging
from lipwa.reconcile.matcher import DISCREPANCIES
from lipwa.reconcile.render import print_table, to_csv, to_json
from lipwa.reconcile.service import Reconciler, RunResult
from lipwa.reconcile.statements import Statement, StatementError, parse_file
from lipwa.store.db import make_engine, make_sessionmaker

FORMATS = ("table", "csv", "json")
REVENUE_COLUMNS = [
    "merchant_id", "currency", "day", "payments", "succeeded", "failed", "open", "success_rate",
    "gross", "provider_fees", "platform_fees", "refunds", "refunded", "net", "without_fees",
]  # fmt: skip


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(FORMATS)}", param_hint="--format")


def _check_output(output: Path | None) -> None:
    """Refused before any work: a reconcile run is stored before its report is written."""
    if output is None:
        return
    if output.is_dir() or not os.access(output if output.exists() else output.parent, os.W_OK):
        raise typer.BadParameter(f"cannot write to {output}", param_hint="--output")


def _log_to_stderr(settings: Settings) -> None:
    """Logs go to stderr, so stdout carries only the report (unless a host app set them up)."""
    if not structlog.is_configured():
        configure_logging(settings.log_level, settings.log_json)


def _parse_with_progress(path: Path, console: Console) -> Statement:
    size = path.stat().st_size if path.is_file() else 0
    with Progress(
        TextColumn("[bold]Reading statement"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=size < 1_000_000,
    ) as progress:
        task = progress.add_task("read", total=size or None)
        return parse_file(path, lambda done: progress.update(task, completed=done))


async def _run(
    settings: Settings, account_id: str, statement: Statement, day: date | None, console: Console
) -> RunResult:
    engine = make_engine(settings.database_url, pool_size=2)
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            tasks: dict[str, Any] = {}

            def report(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    label = {"settle": "Settling paid payments", "store": "Storing results"}
                    tasks[stage] = progress.add_task(label.get(stage, stage), total=total)
                progress.update(tasks[stage], completed=done)

            reconciler = Reconciler(make_sessionmaker(engine))
            return await reconciler.run(
                account_id, statement, day=day, source=statement.source, progress=report
            )
    finally:
        await engine.dispose()


def reconcile(
    settings: Settings,
    console: Console,
    account_id: str,
    statement_path: Path,
    day: date | None,
    fmt: str,
    output: Path | None,
) -> int:
    """Parse, reconcile, print; returns the exit code (0 clean, 1 discrepancies, 2 error)."""
    _check_format(fmt)
    _check_output(output)
    _log_to_stderr(settings)
    status = Console(stderr=True)  # progress and errors never mix with CSV/JSON on stdout
    try:
        statement = _parse_with_progress(statement_path, status)
        result = asyncio.run(_run(settings, account_id, statement, day, status))
    except StatementError as exc:
        status.print(f"[red]Statement rejected, nothing recorded:[/red] {exc}", soft_wrap=True)
        return 2
    except ApiError as exc:
        status.print(f"[red]{exc.message}[/red]", soft_wrap=True)
        return 2
    if fmt == "table":
        if output is None:
            print_table(console, result.run, result.items)
        else:
            with output.open("w", encoding="utf-8") as handle:
                print_table(Console(file=handle, width=160), result.run, result.items)
    else:
        text = to_csv(result.items) if fmt == "csv" else to_json(result.run, result.items)
        if output is None:
            typer.echo(text, nl=False)
        else:
            output.write_text(text, encoding="utf-8")
    if output is not None:
        status.print(f"Run {result.run['id']} written to {output}.")
    counts = result.run["summary"]["counts"]
    return 1 if any(counts.get(k) for k in DISCREPANCIES) else 0


# ----- revenue ------------------------------------------------------------------------------------
async def _revenue(
    settings: Settings, first: date, last: date, merchant_id: str | None, mode: str
) -> dict[str, Any]:
    from lipwa.services.revenue import revenue_report

    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            return await revenue_report(session, first, last, mode=mode, merchant_id=merchant_id)
    finally:
        await engine.dispose()


def revenue(
    settings: Settings,
    console: Console,
    first: date,
    last: date,
    merchant_id: str | None,
    mode: str,
    fmt: str,
    output: Path | None,
) -> int:
    _check_format(fmt)
    _check_output(output)
    _log_to_stderr(settings)
    try:
        report = asyncio.run(_revenue(settings, first, last, merchant_id, mode))
    except DomainError as exc:
        Console(stderr=True).print(f"[red]{exc.message}[/red]", soft_wrap=True)
        return 2
    if fmt == "json":
        text = json.dumps(report, indent=2)
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=REVENUE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(report["data"])
        text = out.getvalue()
    else:
        target = console if output is None else Console(file=io.StringIO(), width=200)
        _revenue_table(target, report)
        if output is None:
            return 0
        text = target.file.getvalue()  # type: ignore[attr-defined]
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
    return 0


TABLE_COLUMNS = [
    ("day", "day"), ("currency", "cur"), ("paid", "paid/n"), ("success_rate", "rate"),
    ("gross", "gross"),
    ("provider_fees", "provider"), ("platform_fees", "platform"), ("refunded", "refunded"),
    ("net", "net"),
]  # fmt: skip


def _revenue_table(console: Console, report: dict[str, Any]) -> None:
    merchants = sorted({row["merchant_id"] for row in report["totals"]})
    console.print(f"Revenue {report['from']} → {report['to']} ({report['mode']} payments)")
    for merchant_id in merchants:
        table = Table(
            title=merchant_id,
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            padding=(0, 1),
            collapse_padding=True,  # 80 columns hold every figure whole
        )
        for key, label in TABLE_COLUMNS:
            table.add_column(label, justify="left" if key in {"day", "currency"} else "right",
                             no_wrap=True)  # fmt: skip
        for rows, style in ((report["data"], ""), (report["totals"], "bold")):
            for row in rows:
                if row["merchant_id"] == merchant_id:
                    rate = row["success_rate"]
                    values = {
                        **row,
                        "day": row["day"] or "total",
                        "paid": f"{row['succeeded']}/{row['payments']}",
                        "success_rate": f"{Decimal(rate) * 100:.1f}%" if rate else None,
                    }
                    table.add_row(
                        *("" if values[k] is None else str(values[k]) for k, _ in TABLE_COLUMNS),
                        style=style,
                    )
        console.print(table)
    if not merchants:
        console.print("No payments in this range.")
    console.print("Provider fees are estimates unless the merchant's tariff is configured.")
