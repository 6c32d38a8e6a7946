"""``lipwa merchants …`` and ``lipwa api-keys …``: the admin API's merchant and key operations on
the database directly (LIPWA_DATABASE_URL), each change with its audit entry in one transaction.
``lipwa accounts add | list | disable | enable`` run through the same ``run_admin``.

A key revoked here is refused by every running gateway within 10 s (their key cache)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from lipwa.config import Settings
    from lipwa.vault import Vault

T = TypeVar("T")
console = Console()
merchants_app = typer.Typer(help="Merchants: create, show, list.", no_args_is_help=True)
api_keys_app = typer.Typer(
    help="Merchants' API keys: create (shown once), list, revoke.", no_args_is_help=True
)

ACTOR_HELP = "Who, for the audit log (default: $USER)."
JSON_HELP = "Print JSON."
KEY_COLUMNS = ["id", "mode", "hint", "status", "created_at", "revoked_at"]
ACCOUNT_COLUMNS = ["id", "provider", "environment", "currency", "status", "label"]


@dataclass
class Admin:
    """What one admin command works with: a session inside its transaction, the settings and
    the name the audit log records."""

    session: AsyncSession
    settings: Settings
    actor: str

    def vault(self) -> Vault:
        from lipwa.container import load_vault

        return load_vault(self.settings)


def actor_name(given: str | None) -> str:
    return given or os.environ.get("USER") or "cli"


def run_admin(
    work: Callable[[Admin], Awaitable[T]], actor: str | None = None, *, write: bool = True
) -> T:
    """Run ``work`` (in one transaction when it ``write``s); any refusal is printed and
    changes nothing. Every CLI command that works on the database directly runs through it."""
    from pydantic import ValidationError
    from sqlalchemy.exc import DBAPIError

    from lipwa.config import Settings
    from lipwa.container import ConfigurationError
    from lipwa.domain.errors import DomainError
    from lipwa.services.accounts import NotFound
    from lipwa.store.db import make_engine, make_sessionmaker

    try:
        settings = Settings()
    except ValueError as exc:
        console.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc

    async def main() -> T:
        engine = make_engine(settings.database_url, pool_size=2)
        try:
            async with make_sessionmaker(engine)() as session:
                admin = Admin(session, settings, actor_name(actor))
                if not write:
                    return await work(admin)
                async with session.begin():
                    return await work(admin)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except ConfigurationError as exc:
        console.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except NotFound as exc:
        console.print(f"[red]Not found:[/red] {exc}")
        raise typer.Exit(1) from exc
    except DomainError as exc:
        where = f" ({exc.param})" if exc.param else ""
        console.print(f"[red]{exc.code}:[/red] {exc.message}{where}")
        raise typer.Exit(1) from exc
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "input"
            console.print(f"[red]invalid:[/red] {where}: {error['msg']}")
        raise typer.Exit(1) from exc
    except DBAPIError as exc:
        console.print(
            f"[red]Database error:[/red] {type(exc.orig).__name__}. Is the database migrated "
            "(`lipwa migrate`)?"
        )
        raise typer.Exit(1) from exc


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Ids whole, on one line (they are copied into the next command); other cells fold."""
    table = Table()
    for name in columns:
        if name == "id":
            width = max((len(str(row.get(name) or "")) for row in rows), default=2)
            table.add_column(name, no_wrap=True, min_width=width)
        else:
            table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row[c]) for c in columns))
    console.print(table)


def parse_json_object(text: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint=name) from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint=name)
    return value


# ----- merchants --------------------------------------------------------------------------------
@merchants_app.command("create")
def merchants_create(
    name: str = typer.Argument(..., help="The merchant's name."),
    settings: str = typer.Option(
        "{}", "--settings", help="Per-merchant settings as JSON, e.g. '{\"limits\": {...}}'."
    ),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Create a merchant (then: `lipwa accounts add`, `lipwa api-keys create`)."""
    from lipwa.services import accounts, merchant_admin

    raw = {"name": name, "settings": parse_json_object(settings, "--settings")}

    async def work(admin: Admin) -> dict[str, Any]:
        data = accounts.MerchantIn.model_validate(raw)
        merchant = await merchant_admin.create_merchant(admin.session, admin.actor, data)
        return accounts.merchant_view(merchant)

    view = run_admin(work, actor)
    if as_json:
        print_json(view)
        return
    console.print(f"Merchant [bold]{view['id']}[/bold] created ({view['name']}).")


@merchants_app.command("show")
def merchants_show(
    merchant_id: str = typer.Argument(..., help="mer_…"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show a merchant with its provider accounts and API keys (no secret, no key)."""
    from lipwa.services import accounts

    async def work(admin: Admin) -> dict[str, Any]:
        merchant = await accounts.get_merchant(admin.session, merchant_id)
        rows = await accounts.list_accounts(admin.session, merchant_id)
        keys = await accounts.list_api_keys(admin.session, merchant_id)
        public_url = admin.settings.public_url
        return {
            **accounts.merchant_view(merchant),
            "accounts": [accounts.account_view(a, public_url) for a in rows],
            "api_keys": [accounts.api_key_view(k) for k in keys],
        }

    view = run_admin(work)
    if as_json:
        print_json(view)
        return
    console.print(f"[bold]{view['id']}[/bold] {view['name']} (created {view['created_at']})")
    if view["settings"]:
        console.print(f"settings: {json.dumps(view['settings'])}")
    print_table(view["accounts"], ACCOUNT_COLUMNS)
    print_table(view["api_keys"], KEY_COLUMNS)


@merchants_app.command("list")
def merchants_list(
    limit: int = typer.Option(100, min=1, max=500, help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List merchants, newest first."""
    from lipwa.services import accounts

    async def work(admin: Admin) -> list[dict[str, Any]]:
        return [
            accounts.merchant_view(m) for m in await accounts.list_merchants(admin.session, limit)
        ]

    rows = run_admin(work)
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["id", "name", "created_at"])


# ----- API keys ---------------------------------------------------------------------------------


@api_keys_app.command("create")
def api_keys_create(
    merchant_id: str = typer.Argument(..., help="mer_…"),
    mode: str = typer.Option(
        ..., "--mode", help="test (sandbox accounts only) or live (production accounts only)."
    ),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Create an API key. The key is printed once, here; Lipwa keeps only its hash."""
    from lipwa.services import accounts, merchant_admin

    if mode not in {"test", "live"}:
        raise typer.BadParameter("test or live", param_hint="--mode")

    async def work(admin: Admin) -> dict[str, Any]:
        key, raw = await merchant_admin.create_api_key(
            admin.session, admin.actor, merchant_id, "live" if mode == "live" else "test"
        )
        return {**accounts.api_key_view(key), "key": raw}

    view = run_admin(work, actor)
    if as_json:
        print_json(view)
        return
    console.print(f"API key {view['id']} ({view['mode']}) for {view['merchant_id']}:")
    typer.echo(view["key"])
    console.print("Store it now: it is shown this once and cannot be read again.")


@api_keys_app.command("list")
def api_keys_list(
    merchant_id: str = typer.Argument(..., help="mer_…"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List a merchant's API keys, revoked ones included (hints only)."""
    from lipwa.services import accounts

    async def work(admin: Admin) -> list[dict[str, Any]]:
        return [
            accounts.api_key_view(k)
            for k in await accounts.list_api_keys(admin.session, merchant_id)
        ]

    rows = run_admin(work)
    if as_json:
        print_json(rows)
        return
    print_table(rows, KEY_COLUMNS)


@api_keys_app.command("revoke")
def api_keys_revoke(
    key_id: str = typer.Argument(..., help="key_… (from `lipwa api-keys list`)."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit log)."),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Revoke an API key for good. Running gateways refuse it within 10 s."""
    from lipwa.services import accounts, merchant_admin

    async def work(admin: Admin) -> tuple[dict[str, Any], bool]:
        key, changed = await merchant_admin.revoke_api_key(
            admin.session, admin.actor, key_id, reason
        )
        return accounts.api_key_view(key), changed

    view, changed = run_admin(work, actor)
    if as_json:
        print_json(view)
        return
    if changed:
        console.print(f"API key {view['id']} ({view['hint']}) revoked.")
        console.print("Running gateways refuse it within 10 s.")
    else:
        console.print(f"API key {view['id']} was already revoked at {view['revoked_at']}.")
