"""``lipwa accounts …``: add, list, disable and enable provider accounts, and the operations
that talk to the provider (C2B URL registration) or change an account's settings (C2B
validation rules).

Runs with the gateway's configuration (LIPWA_DATABASE_URL, LIPWA_ENCRYPTION_KEYS to seal or open
the account's credentials, LIPWA_PUBLIC_URL for the callback URLs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import typer
from rich.console import Console

from lipwa.cli_admin import (
    ACCOUNT_COLUMNS,
    ACTOR_HELP,
    JSON_HELP,
    Admin,
    parse_json_object,
    print_json,
    print_table,
    run_admin,
)

accounts_app = typer.Typer(
    help="Provider accounts: add, list, disable, enable; C2B URL registration and rules.",
    no_args_is_help=True,
)
console = Console()


def _run(work: Callable[[Any], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Build the app container, run ``work(registrar)``, report errors as the API would."""
    from lipwa.config import Settings
    from lipwa.container import ConfigurationError, Container
    from lipwa.errors import ApiError
    from lipwa.services.accounts import NotFound
    from lipwa.services.c2b_register import C2bRegistrar

    try:
        settings = Settings()
        container = Container.build(settings)
    except (ValueError, ConfigurationError) as exc:
        console.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc

    async def main() -> dict[str, Any]:
        try:
            registrar = C2bRegistrar(container.sessions, container.registry, settings.public_url)
            return await work(registrar)
        finally:
            await container.close()

    try:
        return asyncio.run(main())
    except ApiError as exc:
        console.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    except NotFound as exc:
        console.print(f"[red]No such account:[/red] {exc}")
        raise typer.Exit(1) from exc


def _show(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(view, indent=2))
        return
    console.print(f"Account {view['account_id']} (shortcode {view['shortcode']})")
    state = (
        f"registered {view['registered_at']} ({view['response_type']})"
        if view["registered"]
        else "not registered"
    )
    console.print(f"  C2B URLs: {state}")
    console.print(f"  validation:   {view['validation_url']}")
    console.print(f"  confirmation: {view['confirmation_url']}")
    console.print(f"  rules: {json.dumps(view['rules'])}")


@accounts_app.command("add")
def add(
    merchant_id: str = typer.Argument(..., help="mer_…"),
    provider: str = typer.Option(..., "--provider", help="mpesa or momo."),
    environment: str = typer.Option(..., "--environment", help="sandbox or production."),
    credentials: typer.FileText = typer.Option(
        ...,
        "--credentials",
        help="JSON file of the credentials, as in the admin API ('-' reads stdin). Never on the "
        "command line, where shell history and ps would keep them.",
    ),
    base_url: str | None = typer.Option(
        None, "--base-url", help="Default: the provider's real host for the environment."
    ),
    label: str = typer.Option("", "--label", help="A name for people."),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Add a provider account; its secrets are sealed before they are stored. Prints the
    account, secrets masked, with the callback URL the provider must call."""
    from lipwa.services import accounts, merchant_admin

    raw = {
        "provider": provider,
        "environment": environment,
        "label": label,
        "base_url": base_url,
        "credentials": parse_json_object(credentials.read(), "--credentials"),
    }

    async def work(admin: Admin) -> dict[str, Any]:
        data = accounts.AccountIn.model_validate(raw)
        account = await merchant_admin.add_account(
            admin.session, admin.vault(), admin.actor, merchant_id, data
        )
        return accounts.account_view(account, admin.settings.public_url)

    view = run_admin(work, actor)
    if as_json:
        print_json(view)
        return
    console.print(
        f"Account [bold]{view['id']}[/bold] ({view['provider']} {view['environment']}, "
        f"{view['currency']}) added to {view['merchant_id']}."
    )
    console.print(f"Callback URL: {view['callback_url']}")


@accounts_app.command("list")
def list_(
    merchant_id: str = typer.Argument(..., help="mer_…"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List a merchant's provider accounts (secrets masked)."""
    from lipwa.services import accounts

    async def work(admin: Admin) -> list[dict[str, Any]]:
        await accounts.get_merchant(admin.session, merchant_id)
        rows = await accounts.list_accounts(admin.session, merchant_id)
        return [accounts.account_view(a, admin.settings.public_url) for a in rows]

    rows = run_admin(work)
    if as_json:
        print_json(rows)
        return
    print_table(rows, ACCOUNT_COLUMNS)


@accounts_app.command("disable")
def disable(
    account_id: str = typer.Argument(..., help="acct_…"),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit log)."),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Take no new payment, payout or lookup through the account. Its open payments are still
    settled (callbacks, status checks, reconciliation)."""
    _set_status(account_id, "disabled", reason, actor)


@accounts_app.command("enable")
def enable(
    account_id: str = typer.Argument(..., help="acct_…"),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit log)."),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Enable a disabled account again."""
    _set_status(account_id, "active", reason, actor)


def _set_status(
    account_id: str, status: Literal["active", "disabled"], reason: str, actor: str | None
) -> None:
    from lipwa.services import merchant_admin

    async def work(admin: Admin) -> bool:
        _, changed = await merchant_admin.set_account_status(
            admin.session, admin.actor, account_id, status, reason
        )
        return changed

    changed = run_admin(work, actor)
    word = "disabled" if status == "disabled" else "enabled"
    console.print(f"Account {account_id} {'is now' if changed else 'was already'} {word}.")


@accounts_app.command("register-c2b")
def register_c2b(
    account_id: str = typer.Argument(..., help="The M-Pesa account (acct_…)."),
    response_type: str = typer.Option(
        "Completed",
        "--response-type",
        help="Completed or Cancelled: what Daraja does when validation does not answer in time.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Register the account's C2B validation and confirmation URLs with Daraja.

    The URLs are <LIPWA_PUBLIC_URL>/callbacks/<account token>/c2b-validate and …/c2b-confirm;
    they are checked against Daraja's URL rules before anything is sent."""
    if response_type not in ("Completed", "Cancelled"):
        raise typer.BadParameter("use Completed or Cancelled", param_hint="--response-type")
    view = _run(lambda r: r.register(account_id, response_type, "cli"))
    _show(view, as_json)


@accounts_app.command("c2b-rules")
def c2b_rules(
    account_id: str = typer.Argument(..., help="The M-Pesa account (acct_…)."),
    accept_unknown: bool = typer.Option(
        True,
        "--accept-unknown/--reject-unknown",
        help="Accept account numbers that match no open order and not the pattern.",
    ),
    account_pattern: str | None = typer.Option(
        None, "--account-pattern", help="Regular expression of known account numbers."
    ),
    min_amount: str | None = typer.Option(None, "--min-amount", help="Smallest amount, KES."),
    max_amount: str | None = typer.Option(None, "--max-amount", help="Largest amount, KES."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Set how the account answers C2B validation requests (replaces the previous rules)."""
    rules = {
        "accept_unknown_accounts": accept_unknown,
        "account_pattern": account_pattern,
        "min_amount": min_amount,
        "max_amount": max_amount,
    }
    view = _run(lambda r: r.set_rules(account_id, rules, "cli"))
    _show(view, as_json)


@accounts_app.command("c2b")
def c2b_show(
    account_id: str = typer.Argument(..., help="The M-Pesa account (acct_…)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the account's C2B URLs, registration and validation rules."""
    _show(_run(lambda r: r.describe(account_id)), as_json)
