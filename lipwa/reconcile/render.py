"""A reconciliation run as a table (rich), CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from lipwa.reconcile.matcher import CRITICAL, DISCREPANCIES, KINDS, UNKNOWN_RESOLVED

CSV_COLUMNS = [
    "kind", "critical", "receipt", "payment_id", "statement_amount", "lipwa_amount", "currency",
    "statement_party", "lipwa_phone", "completed_at", "created_at", "lipwa_status", "matched_by",
    "line", "note",
]  # fmt: skip
TABLE_LIMIT = 50


def _note(item: dict[str, Any]) -> str:
    parts = []
    for key in (
        "previous_status",
        "status",
        "settled",
        "receipt_added",
        "reason",
        "statement_party",
    ):
        if item.get(key):
            parts.append(f"{key}={item[key]}")
    return "; ".join(parts)


def flat(item: dict[str, Any]) -> dict[str, Any]:
    row = item.get("statement") or {}
    pay = item.get("payment") or {}
    return {
        "kind": item["kind"],
        "critical": "yes" if item["kind"] in CRITICAL else "",
        "receipt": item.get("receipt") or "",
        "payment_id": item.get("payment_id") or "",
        "statement_amount": row.get("amount", ""),
        "lipwa_amount": pay.get("amount", ""),
        "currency": row.get("currency") or pay.get("currency") or "",
        "statement_party": row.get("party", ""),
        "lipwa_phone": pay.get("phone", ""),
        "completed_at": row.get("completed_at") or "",
        "created_at": pay.get("created_at") or "",
        "lipwa_status": pay.get("status", ""),
        "matched_by": item.get("matched_by") or "",
        "line": row.get("line", ""),
        "note": _note(item),
    }


def to_csv(items: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for item in items:
        writer.writerow(flat(item))
    return out.getvalue()


def to_json(run: dict[str, Any], items: Sequence[dict[str, Any]]) -> str:
    return json.dumps({**run, "items": list(items)}, indent=2, default=str)


def print_table(
    console: Console, run: dict[str, Any], items: Sequence[dict[str, Any]], limit: int = TABLE_LIMIT
) -> None:
    summary = run.get("summary") or {}
    counts: dict[str, int] = summary.get("counts", {})
    period = summary.get("period", {})
    console.print(
        f"Run [bold]{run['id']}[/bold] · account {run['account_id']} · "
        f"{summary.get('statement_rows', 0)} statement row(s), "
        f"{summary.get('lipwa_payments', 0)} Lipwa payment(s) · "
        f"period {period.get('start')} → {period.get('end')}"
    )
    totals = Table(title="Reconciliation")
    totals.add_column("Result")
    totals.add_column("Count", justify="right")
    for kind in KINDS:
        style = "bold red" if kind in CRITICAL and counts.get(kind) else ""
        if kind in DISCREPANCIES and counts.get(kind) and not style:
            style = "yellow"
        totals.add_row(kind, str(counts.get(kind, 0)), style=style)
    console.print(totals)
    order = {kind: n for n, kind in enumerate((*DISCREPANCIES, UNKNOWN_RESOLVED))}
    shown = sorted((i for i in items if i["kind"] in order), key=lambda i: order[i["kind"]])
    if not shown:
        console.print("[green]No discrepancies.[/green]")
        return
    console.print("[bold]To look at[/bold]")
    for item in shown[:limit]:
        style = "bold red" if item["kind"] in CRITICAL else "yellow"
        if item["kind"] == UNKNOWN_RESOLVED:
            style = "green"
        console.print(f"[{style}]{item['kind']}[/{style}] {describe(item)}", highlight=False)
    if len(shown) > limit:
        console.print(f"… and {len(shown) - limit} more (use --format csv or json).")


def describe(item: dict[str, Any]) -> str:
    """One line for a person: which payment, which receipt, what each side says."""
    f = flat(item)
    parts = []
    if f["payment_id"]:
        parts.append(f["payment_id"])
    if f["receipt"]:
        parts.append(f"receipt {f['receipt']}")
    if item.get("statement"):
        parts.append(
            f"statement line {f['line']}: {f['statement_amount']} {f['currency']} "
            f"from {f['statement_party'] or '?'}"
        )
    if item.get("payment"):
        parts.append(
            f"Lipwa: {f['lipwa_amount']} {f['currency']} from {f['lipwa_phone']}, "
            f"{f['lipwa_status']}"
        )
    if f["note"]:
        parts.append(f["note"])
    return " · ".join(parts)
