"""The ``lipwa`` command line."""

from __future__ import annotations

import json

import typer
from rich.console import Console

app = typer.Typer(help="Lipwa: a self-hosted mobile money gateway (M-Pesa and MTN MoMo).",
                  no_args_is_help=True)
console = Console()


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
