"""``lipwa accounts …``: provider-account operations that talk to the provider (C2B URL
registration) or change an account's settings (C2B validation rules).

Runs with the gateway's configuration (LIPWA_DATABASE_URL, LIPWA_ENCRYPTION_KEYS to open the
account's credentials, LIPWA_PUBLIC_URL for the callback URLs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import typer
from rich.console import Console

accounts_app = typer.Typer(
    help="Provider accounts: C2B URL registration and validation rules.", no_args_is_help=True
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
