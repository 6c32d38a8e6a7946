"""``lipwa flags …`` and ``lipwa audit …``: kill switches, rollouts and the audit log, on the
database directly (LIPWA_DATABASE_URL). Running processes pick up a flag change within
LIPWA_FLAGS_REFRESH_S (default 2 s)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from lipwa.cli_admin import print_json, print_table, run_admin

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from lipwa.config import Settings

T = TypeVar("T")
console = Console()
flags_app = typer.Typer(help="Kill switches and percentage rollouts.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log of operator actions.", no_args_is_help=True)
anomalies_app = typer.Typer(
    help="Provider reports kept as anomalies instead of being applied.", no_args_is_help=True
)


def _run(work: Callable[[AsyncSession], Awaitable[T]], *, write: bool = False) -> T:
    return run_admin(lambda admin: work(admin.session), write=write)


def _print(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    if as_json:
        print_json(rows)
    else:
        print_table(rows, columns)


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise typer.BadParameter(
            "an ISO time with a zone, e.g. 2025-01-31T00:00Z", None, None, "since"
        )
    return value


def mode_problem(settings: Settings) -> str | None:
    """``lipwa serve``'s start-up check: LIPWA_MODE against the keys and accounts."""
    from lipwa.services.modes import mode_problem as check
    from lipwa.store.db import make_engine, make_sessionmaker

    async def main() -> str | None:
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                return await check(session, settings.mode)
        finally:
            await engine.dispose()

    return asyncio.run(main()) if settings.mode != "mixed" else None


@flags_app.command("list")
def flags_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show every flag that is set (a missing flag means on)."""
    from lipwa.services import flags

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return [flags.flag_view(f) for f in await flags.list_flags(session)]

    columns = ["key", "enabled", "percentage", "reason", "updated_by", "updated_at"]
    _print(_run(work), columns, as_json)


@flags_app.command("set")
def flags_set(
    key: str = typer.Argument(
        ..., help="gateway | provider:<p> | merchant:<id> | account:<id> | rollout:<p>"
    ),
    enabled: bool = typer.Option(..., "--on/--off", help="Switch the path on or off."),
    percent: int | None = typer.Option(None, "--percent", help="rollout:<p> only: 0..100."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log)."),
    actor: str | None = typer.Option(None, "--actor", help="Who (default: $USER)."),
) -> None:
    """Set a kill switch or rollout and write its audit entry in the same transaction."""
    from lipwa.services import flags

    who = actor or os.environ.get("USER") or "cli"

    async def work(session: AsyncSession) -> dict[str, Any]:
        state = await flags.set_flag(
            session, key, enabled=enabled, percentage=percent, reason=reason, actor=who
        )
        return flags.flag_view(state)

    view = _run(work, write=True)
    console.print(f"{view['key']} is now {'on' if view['enabled'] else 'off'}", end="")
    console.print(f" at {view['percentage']}%" if view["percentage"] is not None else "")
    console.print("Every running process applies it within LIPWA_FLAGS_REFRESH_S (default 2 s).")


@audit_app.command("list")
def audit_list(
    action: str | None = typer.Option(None, help="e.g. flag.set, merchant.created"),
    target: str | None = typer.Option(None, help="e.g. provider:mpesa, mer_…"),
    merchant: str | None = typer.Option(None, help="Only entries about this merchant."),
    since: str | None = typer.Option(None, help="ISO time with zone, e.g. 2025-01-31T00:00Z."),
    limit: int = typer.Option(50, min=1, max=500),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show audit entries, newest first."""
    from lipwa.services.audit import AuditFilter, entry_view, list_entries

    after = _since(since)

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        query = AuditFilter(action, target, merchant, after, limit)
        return [entry_view(e) for e in await list_entries(session, query)]

    columns = ["id", "at", "actor", "action", "target", "reason"]
    _print(_run(work), columns, as_json)


@anomalies_app.command("list")
def anomalies_list(
    merchant: str | None = typer.Option(None, help="Only this merchant's."),
    kind: str | None = typer.Option(None, help="e.g. contradicting_report, callback_mismatch"),
    since: str | None = typer.Option(None, help="ISO time with zone, e.g. 2025-01-31T00:00Z."),
    limit: int = typer.Option(50, min=1, max=500),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show anomalies, newest first: each needs a person to look at the payment (and the
    provider's statement) and settle it with the payer or the merchant."""
    from lipwa.services.anomalies import AnomalyFilter, anomaly_view, list_anomalies

    after = _since(since)

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        query = AnomalyFilter(merchant, kind, after, limit)
        return [anomaly_view(a) for a in await list_anomalies(session, query)]

    columns = ["id", "created_at", "kind", "merchant_id", "subject_id", "detail"]
    _print(_run(work), columns, as_json)
