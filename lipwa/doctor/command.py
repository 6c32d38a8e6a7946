"""``lipwa doctor``: render the checks as a table (or JSON) and exit 1 on any failure."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lipwa.config import Settings
from lipwa.doctor.result import Check, Status
from lipwa.doctor.runner import run_doctor

STYLE = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "bold red"}


def summary(checks: list[Check]) -> dict[str, int]:
    return {s.value: sum(1 for c in checks if c.status is s) for s in Status}


def render_table(checks: list[Check], console: Console) -> None:
    table = Table("", "check", "detail → fix", show_lines=False, expand=False)
    for check in checks:
        style = STYLE[check.status]
        text = escape(check.detail) + (f"\n[cyan]→ {escape(check.fix)}[/cyan]" if check.fix else "")
        table.add_row(f"[{style}]{check.status.value.upper()}[/{style}]", check.name, text)
    console.print(table)
    counts = summary(checks)
    console.print(f"{counts['fail']} failed, {counts['warn']} warning(s), {counts['pass']} passed")


def run_command(
    settings: Settings,
    console: Console | None = None,
    *,
    online: bool = False,
    as_json: bool = False,
    processes: int = 1,
    alert_rules: Path = Path("deploy/prometheus/lipwa-alerts.yml"),
) -> None:
    checks = asyncio.run(
        run_doctor(settings, online=online, processes=processes, alert_rules=alert_rules)
    )
    failed = any(c.status is Status.FAIL for c in checks)
    if as_json:
        payload = {
            "ok": not failed,
            "summary": summary(checks),
            "checks": [c.as_dict() for c in checks],
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        # A fresh console: its width follows the terminal (or COLUMNS) at call time.
        render_table(checks, Console(highlight=False))
    if failed:
        raise typer.Exit(1)
