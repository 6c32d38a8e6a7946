"""The ``lipwa`` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from lipwa.cli_accounts import accounts_app
from lipwa.cli_admin import api_keys_app, merchants_app
from lipwa.cli_ops import anomalies_app, audit_app, flags_app, mode_problem

app = typer.Typer(
    help="Lipwa: a self-hosted mobile money gateway (M-Pesa and MTN MoMo).", no_args_is_help=True
)
console = Console()

if TYPE_CHECKING:
    from lipwa.config import Settings


@app.command()
def simulate(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8700, help="Port to listen on."),
    seed: int = typer.Option(0, help="Seed that makes fault decisions reproducible."),
    prompt_seconds: float = typer.Option(1.0, help="How long a payment prompt stays open."),
    momo_callback_host: str = typer.Option(
        "localhost", help="providerCallbackHost of the demo MoMo API user."
    ),
    momo_callback_method: str = typer.Option("PUT", help="PUT or POST for MoMo callbacks."),
    drop: float = typer.Option(0.0, help="Percent of callbacks dropped."),
    duplicate: float = typer.Option(0.0, help="Percent of callbacks sent twice."),
    delay_min: float = typer.Option(0.0, help="Smallest callback delay, seconds."),
    delay_max: float = typer.Option(0.0, help="Largest callback delay, seconds."),
    reorder: float = typer.Option(0.0, help="Percent of callbacks delivered out of order."),
    errors: float = typer.Option(0.0, help="Percent of API calls answered with a provider 5xx."),
    created_errors: float = typer.Option(
        0.0, help="Percent of MoMo creating calls that take effect but answer 500."
    ),
    latency_ms: float = typer.Option(0.0, help="Latency added to every API answer, ms."),
    answer_delay_ms: float = typer.Option(
        0.0, help="Act at once but answer this late, ms (a timeout then hides success)."
    ),
) -> None:
    """Serve the Daraja and MoMo simulator on one port, on the providers' real paths."""
    import uvicorn

    from lipwa.simulator.app import build_app
    from lipwa.simulator.core import Faults, SimSettings, Simulator

    try:
        faults = Faults()
        faults.update(
            {
                "callback_drop_pct": drop,
                "callback_duplicate_pct": duplicate,
                "callback_delay_min_s": delay_min,
                "callback_delay_max_s": delay_max,
                "callback_reorder_pct": reorder,
                "error_pct": errors,
                "created_error_pct": created_errors,
                "latency_ms": latency_ms,
                "answer_delay_ms": answer_delay_ms,
            }
        )
        settings = SimSettings()
        settings.update(
            {
                "prompt_seconds": prompt_seconds,
                "momo_callback_host": momo_callback_host,
                "momo_callback_method": momo_callback_method.upper(),
            }
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    sim = Simulator(seed=seed, faults=faults, settings=settings)
    simulator_app = build_app(sim)
    creds = {
        "mpesa": simulator_app.state.daraja.credentials(),
        "momo": simulator_app.state.momo.credentials(),
    }
    console.print(f"[bold]Lipwa simulator[/bold] on http://{host}:{port}  (seed {seed})")
    console.print("Demo credentials (also at GET /_sim/credentials; fake, for the simulator only):")
    console.print_json(json.dumps(creds))
    uvicorn.run(simulator_app, host=host, port=port, log_level="warning")


keys_app = typer.Typer(help="Encryption keys for credentials at rest.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(flags_app, name="flags")
app.add_typer(audit_app, name="audit")
app.add_typer(anomalies_app, name="anomalies")
app.add_typer(merchants_app, name="merchants")
app.add_typer(accounts_app, name="accounts")
app.add_typer(api_keys_app, name="api-keys")


def _settings() -> Settings:
    from lipwa.config import Settings

    try:
        return Settings()
    except ValueError as exc:
        console.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


@keys_app.command("generate")
def keys_generate(
    version: str | None = typer.Option(
        None, help="Version label of the new key (default: today's date, v20260131)."
    ),
) -> None:
    """Print a new AES-256 key for LIPWA_ENCRYPTION_KEYS (put it first to make it active).

    The default version carries the creation date, from which `lipwa doctor` tells its age."""
    from lipwa.keys import dated_version
    from lipwa.vault import generate_key_text

    typer.echo(generate_key_text(version or dated_version()))


@keys_app.command("status")
def keys_status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """How many sealed secrets each key version protects (drop a key once it shows 0)."""
    from lipwa.cli_keys import status

    status(as_json)


@keys_app.command("rotate")
def keys_rotate(batch: int = typer.Option(100, help="Rows read per page.")) -> None:
    """Re-seal every secret under the active (first) key, row by row, beside a live gateway.

    Resumable: it only touches rows not yet on the active version."""
    from lipwa.cli_keys import rotate

    rotate(batch)


@app.command()
def doctor(
    online: bool = typer.Option(
        False, "--online", help="Also fetch a token per account and call the public URL."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    processes: int = typer.Option(
        1, help="API processes you run (serve --workers, replicas): more than one needs Redis."
    ),
    alert_rules: Path = typer.Option(
        Path("deploy/prometheus/lipwa-alerts.yml"), help="The Prometheus alert rules you load."
    ),
) -> None:
    """Check this configuration for production: pass / warn / fail, with the fix for each.

    Exits 1 when any check fails."""
    from lipwa.doctor.command import run_command

    run_command(
        _settings(),
        console,
        online=online,
        as_json=as_json,
        processes=processes,
        alert_rules=alert_rules,
    )


@app.command()
def migrate() -> None:
    """Bring the database (LIPWA_DATABASE_URL) to the newest schema."""
    from lipwa.store.migrate import head_revision, upgrade

    settings = _settings()
    upgrade(settings.database_url)
    console.print(f"Database at revision {head_revision()}.")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, help="Number of API processes."),
    migrate_first: bool = typer.Option(True, "--migrate/--no-migrate", help="Migrate on start."),
) -> None:
    """Run the HTTP API (LIPWA_PUBLIC_URL is what providers call back)."""
    import uvicorn

    from lipwa.container import ConfigurationError, load_vault
    from lipwa.observability import configure_logging
    from lipwa.store.migrate import upgrade

    settings = _settings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        load_vault(settings)
    except ConfigurationError as exc:
        console.print(f"[red]Cannot start:[/red] {exc}")
        raise typer.Exit(2) from exc
    if migrate_first:
        upgrade(settings.database_url)
    problem = mode_problem(settings)
    if problem:
        console.print(f"[red]Cannot start:[/red] {problem}")
        raise typer.Exit(2)
    uvicorn.run(
        "lipwa.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        # uvicorn's own loggers go through the masked handler configure_logging set up (its
        # default config has handlers of its own, which would print tracebacks unmasked).
        log_config=None,
        log_level=settings.log_level.lower(),
    )


@app.command()
def demo(
    port: int = typer.Option(8000, help="Port of the gateway."),
    simulator_port: int = typer.Option(8700, help="Port of the built-in simulator."),
    data_dir: Path = typer.Option(Path(".lipwa"), help="Where the demo keeps its files."),
    exit_after_payment: bool = typer.Option(
        False, "--exit-after-payment", help="Stop after the first payment (smoke test)."
    ),
) -> None:
    """Start the simulator, the gateway on SQLite and a demo merchant; print a curl to try."""
    from lipwa.demo import run_demo

    result = run_demo(
        port=port,
        simulator_port=simulator_port,
        data_dir=data_dir,
        console=console,
        exit_after_payment=exit_after_payment,
    )
    if exit_after_payment and result["payment"].get("status") != "succeeded":
        raise typer.Exit(1)


events_app = typer.Typer(help="Events and their webhook deliveries.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command("redeliver")
def events_redeliver(
    event_id: str = typer.Argument(..., help="The event to send again (evt_…)."),
    endpoint: str | None = typer.Option(None, "--endpoint", help="Only this endpoint (we_…)."),
) -> None:
    """Queue an event's webhook again, now (a running worker sends it)."""
    from lipwa.cli_events import redeliver

    redeliver(_settings(), console, event_id, endpoint)


@events_app.command("deliveries")
def events_deliveries(event_id: str = typer.Argument(..., help="The event (evt_…).")) -> None:
    """Show an event's webhook deliveries and every attempt."""
    from lipwa.cli_events import deliveries

    deliveries(_settings(), console, event_id)


@app.command()
def worker() -> None:
    """Run the worker (status checks, callback sweep, webhook deliveries) until SIGTERM/SIGINT.

    `lipwa serve` runs it too when LIPWA_ROLE is "all" (the default); run this beside API
    processes started with LIPWA_ROLE=api."""
    from lipwa.cli_recovery import run_worker_process
    from lipwa.container import ConfigurationError, load_vault
    from lipwa.observability import configure_logging

    settings = _settings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        load_vault(settings)
    except ConfigurationError as exc:
        console.print(f"[red]Cannot start:[/red] {exc}")
        raise typer.Exit(2) from exc
    run_worker_process(settings)


@app.command()
def recover(
    since: str | None = typer.Option(
        None, "--since", help="Only payments created at or after this ISO time (with zone)."
    ),
    merchant: str | None = typer.Option(None, "--merchant", help="Only this merchant (mer_…)."),
    concurrency: int = typer.Option(10, help="Payments checked in parallel."),
) -> None:
    """Ask the providers about every open (pending/unknown) payment now; print a summary.

    Exit code: 0 every check ran, 1 some could not (they are listed)."""
    from datetime import datetime

    from lipwa.cli_recovery import recover as run_recover

    started: datetime | None = None
    if since is not None:
        try:
            started = datetime.fromisoformat(since)
        except ValueError as exc:
            raise typer.BadParameter("use an ISO time such as 2026-01-31T08:00:00Z") from exc
        if started.tzinfo is None:
            raise typer.BadParameter("--since needs a time zone, such as Z or +03:00")
    results = run_recover(_settings(), console, started, merchant, concurrency)
    if any(r.action == "error" for r in results):
        raise typer.Exit(1)  # a script or cron job must see that some checks did not run


@app.command()
def reconcile(
    account: str = typer.Option(..., "--account", help="The provider account (acct_…)."),
    statement: Path = typer.Option(
        ..., "--statement", help="M-Pesa organisation statement or MoMo export (CSV)."
    ),
    date: str | None = typer.Option(
        None, "--date", help="The day it covers, YYYY-MM-DD (default: the days of its rows)."
    ),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    output: Path | None = typer.Option(None, "--output", help="Write the report to this file."),
) -> None:
    """Reconcile a provider statement with Lipwa's payments of that account; store the run.

    Exit code: 0 no discrepancies, 1 discrepancies found, 2 the statement was rejected."""
    from datetime import date as date_type

    from lipwa.cli_reconcile import reconcile as run_reconcile

    day = None
    if date is not None:
        try:
            day = date_type.fromisoformat(date)
        except ValueError as exc:
            raise typer.BadParameter("use a date such as 2026-01-31", param_hint="--date") from exc
    code = run_reconcile(_settings(), console, account, statement, day, fmt, output)
    raise typer.Exit(code)


report_app = typer.Typer(help="Reports: revenue and fees.", no_args_is_help=True)
app.add_typer(report_app, name="report")


@report_app.command("revenue")
def report_revenue(
    from_: str = typer.Option(..., "--from", help="First day, YYYY-MM-DD."),
    to: str = typer.Option(..., "--to", help="Last day, YYYY-MM-DD (inclusive)."),
    merchant: str | None = typer.Option(None, "--merchant", help="Only this merchant (mer_…)."),
    mode: str = typer.Option("live", "--mode", help="live or test payments."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    output: Path | None = typer.Option(None, "--output", help="Write the report to this file."),
) -> None:
    """Gross, provider fees, platform fees and net per merchant, currency and day."""
    from lipwa.cli_reconcile import revenue
    from lipwa.domain.errors import DomainError
    from lipwa.services.revenue import parse_day

    try:
        first, last = parse_day(from_, "--from"), parse_day(to, "--to")
    except DomainError as exc:
        raise typer.BadParameter(exc.message) from exc
    if mode not in {"live", "test"}:
        raise typer.BadParameter("use live or test", param_hint="--mode")
    raise typer.Exit(revenue(_settings(), console, first, last, merchant, mode, fmt, output))


def main() -> None:
    """The ``lipwa`` command. A database it cannot reach is one clear line and exit code 1,
    not a traceback (the URL is not printed: it may hold a password)."""
    from sqlalchemy.exc import DBAPIError

    try:
        app()
    except (DBAPIError, ConnectionError, TimeoutError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        console.print(
            f"[red]Cannot reach the database (LIPWA_DATABASE_URL):[/red] {type(exc).__name__}: "
            f"{reason}",
            soft_wrap=True,
        )
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
