"""Benchmark 1: the simulator alone (one uvicorn process).

A load generator process sends N M-Pesa STK pushes (OAuth once, valid Password) and then N
MoMo requests-to-pay (token once) at bounded concurrency; each asks for a callback to a tiny
receiver process. Measured: requests/s accepted, push latency p50/p99, callbacks/s
delivered and the callback lag (push accepted -> callback received, prompt_seconds included).

    python -m bench.simulator                  # defaults finish in about 30 s
    python -m bench.simulator --requests 20000 --concurrency 64
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    RESULTS,
    SIMULATOR_FACTORY,
    Column,
    CpuSampler,
    Proc,
    console,
    free_port,
    install_signal_handlers,
    percentiles,
    render,
    run_loadgen,
    start_simulator,
    uvicorn_args,
    wait_ready,
    write_results,
)
from bench.loadgen import Spec

NAME = "simulator"
TITLE = "Simulator alone: requests accepted and callbacks delivered"
OPERATIONS = {"mpesa": ("stk", "STK push"), "momo": ("rtp", "request-to-pay")}
COLUMNS: list[Column] = [
    ("operation", "operation"),
    ("requests", "requests"),
    ("concurrency", "conc."),
    ("accepted_per_s", "accepted/s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("not_ok", "not OK"),
    ("callbacks", "callbacks"),
    ("callbacks_per_s", "callbacks/s"),
    ("lag_p50_ms", "push→cb p50 ms"),
    ("lag_p99_ms", "push→cb p99 ms"),
    ("cpu_simulator", "sim CPU%"),
    ("sim_cpu_ms_per_request", "sim CPU ms/(req+cb)"),
    ("cpu_loadgen", "loadgen CPU%"),
]


@dataclass
class SimBenchConfig:
    requests: int = 2000
    concurrency: int = 64
    prompt_seconds: float = 0.05
    providers: tuple[str, ...] = ("mpesa", "momo")
    callback_wait_s: float = 15.0
    sim_factory: str = SIMULATOR_FACTORY
    out_dir: Path = field(default_factory=lambda: RESULTS)


def _wait_for_callbacks(receiver: str, expected: int, wait_s: float) -> dict[str, Any]:
    """Poll the receiver until ``expected`` distinct callbacks arrived (or time is up)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if httpx.get(f"{receiver}/stats").json()["unique"] >= expected:
            break
        time.sleep(0.1)
    stats: dict[str, Any] = httpx.get(f"{receiver}/stats", params={"keys": "1"}).json()
    return stats


def _row(
    config: SimBenchConfig,
    provider: str,
    load: dict[str, Any],
    callbacks: dict[str, Any],
    cpu: dict[str, float],
) -> dict[str, Any]:
    sent: dict[str, float] = load.pop("sent_at")
    arrived: dict[str, float] = callbacks.pop("arrived")
    lags = [(arrived[k] - t) * 1000 for k, t in sent.items() if k in arrived]
    lag = percentiles(lags)
    span = (callbacks["last"] or load["wall_start"]) - load["wall_start"]
    not_ok = {k: v for k, v in load["statuses"].items() if int(k) != load["ok_status"]}
    not_ok.update(load["errors"])
    return {
        "provider": provider,
        "operation": OPERATIONS[provider][1],
        "requests": load["sent"],
        "concurrency": load["concurrency"],
        "accepted": load["ok"],
        "accepted_per_s": load["throughput"],
        "p50_ms": load["latency_ms"]["p50"],
        "p90_ms": load["latency_ms"]["p90"],
        "p99_ms": load["latency_ms"]["p99"],
        "max_ms": load["latency_ms"]["max"],
        "not_ok": not_ok or None,
        "callbacks": callbacks["unique"],
        "callback_deliveries": callbacks["deliveries"],
        "callbacks_per_s": round(callbacks["unique"] / span, 1) if span > 0 else 0.0,
        "lag_p50_ms": lag["p50"],
        "lag_p99_ms": lag["p99"],
        "prompt_seconds": config.prompt_seconds,
        "elapsed_s": load["elapsed_s"],
        **{f"cpu_{name}": pct for name, pct in cpu.items()},
        "sim_cpu_ms_per_request": _sim_cpu_ms(cpu, load, callbacks),
    }


def _sim_cpu_ms(
    cpu: dict[str, float], load: dict[str, Any], callbacks: dict[str, Any]
) -> float | None:
    """Simulator CPU ms per accepted request (its callback included)."""
    end = callbacks["last"] or load["wall_end"]
    if "simulator" not in cpu or not load["ok"]:
        return None
    return round(cpu["simulator"] * 10 * (end - load["wall_start"]) / load["ok"], 2)


def run(config: SimBenchConfig) -> list[dict[str, Any]]:
    logs = config.out_dir / "logs"
    rows: list[dict[str, Any]] = []
    receiver_port = free_port()
    receiver = Proc(
        "sim-receiver",
        uvicorn_args("bench.receiver:create_app", receiver_port),
        log_dir=logs,
    )
    sim = None
    try:
        sim = start_simulator(
            config.prompt_seconds, name="sim-simulator", log_dir=logs, factory=config.sim_factory
        )
        receiver_url = f"http://127.0.0.1:{receiver_port}"
        wait_ready(f"{receiver_url}/stats", receiver)
        with CpuSampler() as cpu:
            cpu.add("simulator", sim.proc.pid)
            cpu.add("receiver", receiver.pid)
            for provider in config.providers:
                httpx.post(f"{sim.url}/_sim/reset").raise_for_status()
                httpx.post(f"{receiver_url}/reset").raise_for_status()
                spec = Spec(
                    target=OPERATIONS[provider][0],
                    base_url=sim.url,
                    concurrency=config.concurrency,
                    requests=config.requests,
                    callback_base=receiver_url,
                    credentials=sim.credentials,
                    return_keys=True,
                )
                load = run_loadgen(
                    asdict(spec),
                    name=f"sim-loadgen-{provider}",
                    log_dir=logs,
                    on_start=lambda proc: cpu.add("loadgen", proc.pid),
                )
                callbacks = _wait_for_callbacks(receiver_url, load["ok"], config.callback_wait_s)
                usage = cpu.usage(load["wall_start"], callbacks["last"] or load["wall_end"])
                rows.append(_row(config, provider, load, callbacks, usage))
    finally:
        receiver.stop()
        if sim is not None:
            sim.proc.stop()
    return rows


def report(config: SimBenchConfig, rows: list[dict[str, Any]]) -> Path:
    render(TITLE, rows, COLUMNS)
    return write_results(
        NAME,
        TITLE,
        rows,
        COLUMNS,
        {"config": {k: str(v) for k, v in asdict(config).items()}},
        out_dir=config.out_dir,
    )


def parser(defaults: SimBenchConfig | None = None) -> argparse.ArgumentParser:
    d = defaults or SimBenchConfig()
    p = argparse.ArgumentParser(prog="python -m bench.simulator", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=d.requests, help="per provider")
    p.add_argument("--concurrency", type=int, default=d.concurrency)
    p.add_argument("--prompt-seconds", type=float, default=d.prompt_seconds)
    p.add_argument("--providers", default=",".join(d.providers), help="mpesa,momo")
    p.add_argument("--callback-wait", type=float, default=d.callback_wait_s,
                   help="seconds to wait for the last callbacks")
    p.add_argument("--sim-factory", default=d.sim_factory,
                   help="simulator app factory (module:function)")
    p.add_argument("--out", type=Path, default=d.out_dir, help="results folder")
    return p


def config_from(args: argparse.Namespace) -> SimBenchConfig:
    return SimBenchConfig(
        requests=args.requests,
        concurrency=args.concurrency,
        prompt_seconds=args.prompt_seconds,
        providers=tuple(p for p in args.providers.split(",") if p),
        callback_wait_s=args.callback_wait,
        sim_factory=args.sim_factory,
        out_dir=args.out,
    )


def main(argv: list[str] | None = None) -> None:
    install_signal_handlers()
    config = config_from(parser().parse_args(argv))
    path = report(config, run(config))
    console.print(f"results: {path}")


if __name__ == "__main__":
    main()
