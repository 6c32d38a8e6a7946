"""The ``lipwa`` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

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


def _settings() -> Settings:
    from lipwa.config import Settings

    try:
        return Settings()
    except ValueError as exc:
        console.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


@keys_app.command("generate")
def keys_generate(version: str = typer.Option("v1", help="Version label of the new key.")) -> None:
    """Print a new AES-256 key for LIPWA_ENCRYPTION_KEYS (put it first to make it active)."""
    from lipwa.vault import generate_key_text

    typer.echo(generate_key_text(version))


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
    uvicorn.run(
        "lipwa.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
