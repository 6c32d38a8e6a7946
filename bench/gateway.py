"""Benchmark 2: ``POST /v1/payments`` through the real gateway, beside its ceiling.

For each database (SQLite, PostgreSQL) and worker count (1, 2): a fresh, migrated database;
the gateway as in production (``lipwa serve``, its own process) with the simulator on
loopback (its own process, prompt_seconds small so callbacks flow back during the run); a
demo-like merchant made through the admin API; then a load generator process (wrk if
installed, else httpx) at fixed concurrency: warm-up, then the measured run. Beside it, the
ceiling (bench/ceiling.py: same stack, one INSERT per request) on the same database.

    python -m bench.gateway                          # everything: about 5 minutes
    python -m bench.gateway --db postgres --workers 2 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench import ceiling
from bench.common import (
    BENCH,
    PYTHON,
    RESULTS,
    SIMULATOR_FACTORY,
    Column,
    CpuSampler,
    Proc,
    SimulatorProcess,
    console,
    free_port,
    install_signal_handlers,
    render,
    run_loadgen,
    start_simulator,
    uvicorn_args,
    wait_ready,
    write_results,
)
from bench.loadgen import Spec
from lipwa.store.db import make_engine
from lipwa.store.migrate import upgrade
from lipwa.vault import generate_key_text

NAME = "gateway"
TITLE = "Gateway: POST /v1/payments (initiations/s) vs the ceiling (one INSERT per request)"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/lipwa_bench"
TARGET_PER_S, TARGET_P99_MS = 500.0, 100.0  # the goal, on PostgreSQL
# A load test is one merchant charging many phones fast: lift what would refuse it (counted
# as "not 201" if a new guard still does). The per-API-key rate is a process setting.
LIFTED_LIMITS: dict[str, Any] = {
    "rate_limits": {"prompts": "1000000/second", "payer_lock_s": 0, "same_amount_s": 0},
    "duplicate_window_s": 0,
}
LIFTED_ENV = {"LIPWA_RATE_LIMIT_API_KEY": "1000000/second",
              "LIPWA_RATE_LIMIT_PROMPTS": "1000000/second"}
COLUMNS: list[Column] = [
    ("target", "app"),
    ("database", "db"),
    ("workers", "workers"),
    ("loadgen", "loadgen"),
    ("concurrency", "conc."),
    ("ok", "201s"),
    ("per_s", "201/s"),
    ("p50_ms", "p50 ms"),
    ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"),
    ("not_ok", "not 201"),
    ("cpu_app", "app CPU%"),
    ("app_cpu_ms_per_ok", "app CPU ms/201"),
    ("cpu_simulator", "sim CPU%"),
    ("cpu_postgres", "pg CPU%*"),
    ("cpu_loadgen", "loadgen CPU%"),
    ("payments", "payments after run"),
]


@dataclass
class GatewayBenchConfig:
    databases: tuple[str, ...] = ("sqlite", "postgres")
    workers: tuple[int, ...] = (1, 2)
    targets: tuple[str, ...] = ("ceiling", "provider-ceiling", "gateway")
    concurrency: int = 32
    warmup_s: float = 10.0
    duration_s: float = 20.0
    loadgen: str = "auto"  # auto | wrk | httpx
    prompt_seconds: float = 0.05
    postgres_url: str = PG_URL
    merchant_settings: dict[str, Any] = field(default_factory=lambda: dict(LIFTED_LIMITS))
    gateway_env: dict[str, str] = field(default_factory=lambda: dict(LIFTED_ENV))
    log_level: str = "INFO"
    sim_factory: str = SIMULATOR_FACTORY
    profile: bool = False
    out_dir: Path = field(default_factory=lambda: RESULTS)

    def resolved_loadgen(self) -> str:
        if self.loadgen == "auto":
            return "wrk" if shutil.which("wrk") else "httpx"
        return self.loadgen


# ----- databases ------------------------------------------------------------------------------
def _admin_dsn(url: str) -> tuple[str, str]:
    parsed = make_url(url)
    name = parsed.database or ""
    if not name.startswith("lipwa_bench"):
        # The test suite owns `test`; never drop a database the benchmark did not make.
        raise ValueError(f"refusing to recreate database {name!r}: use a lipwa_bench* name")
    dsn = parsed.set(drivername="postgresql", database="postgres")
    return dsn.render_as_string(hide_password=False), name


def postgres_reachable(url: str) -> bool:
    import asyncpg

    async def ping() -> None:
        conn = await asyncpg.connect(_admin_dsn(url)[0], timeout=3)
        await conn.close()

    try:
        asyncio.run(ping())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    return True


def _execute(dsn: str, *statements: str) -> None:
    """Run ``statements`` in order on one plain asyncpg connection (outside a transaction)."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def recreate_postgres(url: str) -> None:
    dsn, name = _admin_dsn(url)
    _execute(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')


def analyze_postgres(url: str) -> None:
    """Gather planner statistics, as autovacuum does on a database in service.

    A database born seconds ago has none: PostgreSQL then guesses every table tiny and may
    plan a payer's daily total through the (merchant, reference) index, reading all of the
    merchant's payments per request; the prepared statement keeps that plan until the next
    ANALYZE. Autovacuum's first one comes only after its one-minute nap.
    """
    _execute(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
             "ANALYZE")


def fresh_database(kind: str, config: GatewayBenchConfig, scratch: Path) -> str:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{scratch / f'bench-{uuid.uuid4().hex[:8]}.db'}"
    recreate_postgres(config.postgres_url)
    return config.postgres_url


def payment_counts(url: str) -> dict[str, int]:
    async def count() -> dict[str, int]:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT status, count(*) FROM payments GROUP BY status ORDER BY status")
                )
                return {str(status): int(n) for status, n in rows}
        finally:
            await engine.dispose()

    return asyncio.run(count())


# ----- servers --------------------------------------------------------------------------------
@dataclass
class Server:
    proc: Proc
    url: str
    api_key: str = ""


def start_ceiling(
    url: str, workers: int, log_dir: Path, sim: SimulatorProcess | None = None
) -> Server:
    """The ceiling; with ``sim``, the provider ceiling (one STK push per request, and its
    callback)."""
    ceiling.prepare(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"BENCH_DATABASE_URL": url}
    if sim is not None:
        env["BENCH_SIMULATOR"] = json.dumps({"url": sim.url, "mpesa": sim.credentials["mpesa"]})
        env["BENCH_PUBLIC_URL"] = base
    proc = Proc(
        f"{'provider-ceiling' if sim else 'ceiling'}-{_db_kind(url)}-w{workers}",
        uvicorn_args("bench.ceiling:create_app", port, workers=workers),
        env=env,
        log_dir=log_dir,
    )
    try:
        wait_ready(f"{base}/health", proc)
    except BaseException:
        proc.stop()
        raise
    return Server(proc, base)


def start_gateway(
    url: str, workers: int, sim: SimulatorProcess, config: GatewayBenchConfig, log_dir: Path
) -> Server:
    upgrade(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    admin_token = uuid.uuid4().hex
    env = {
        "LIPWA_DATABASE_URL": url,
        "LIPWA_PUBLIC_URL": base,
        "LIPWA_ADMIN_TOKEN": admin_token,
        "LIPWA_ENCRYPTION_KEYS": generate_key_text("v1"),
        "LIPWA_LOG_LEVEL": config.log_level,
        "LIPWA_LOG_JSON": "true",
        "LIPWA_REDIS_URL": "",
        **config.gateway_env,
    }
    proc = Proc(
        f"gateway-{_db_kind(url)}-w{workers}",
        [PYTHON, "-m", "lipwa.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--no-migrate"],
        env=env,
        log_dir=log_dir,
    )
    try:
        wait_ready(f"{base}/health/ready", proc)
        api_key = bootstrap_merchant(base, admin_token, sim, config.merchant_settings)
    except BaseException:
        proc.stop()
        raise
    return Server(proc, base, api_key)


def bootstrap_merchant(
    gateway: str, admin_token: str, sim: SimulatorProcess, settings: dict[str, Any]
) -> str:
    """Like lipwa.demo.bootstrap_demo_merchant (M-Pesa paybill on the simulator, a test key),
    with merchant settings so limits that would refuse a load test can be lifted."""
    mpesa = sim.credentials["mpesa"]
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=gateway, headers=headers, timeout=30) as admin:
        merchant = (
            admin.post("/admin/v1/merchants", json={"name": "Bench shop", "settings": settings})
            .raise_for_status()
            .json()
        )
        admin.post(
            f"/admin/v1/merchants/{merchant['id']}/accounts",
            json={
                "provider": "mpesa",
                "environment": "sandbox",
                "label": "Paybill (simulator)",
                "base_url": sim.url,
                "credentials": {
                    "consumer_key": mpesa["consumer_key"],
                    "consumer_secret": mpesa["consumer_secret"],
                    "shortcode": mpesa["paybill"]["shortcode"],
                    "kind": "paybill",
                    "passkey": mpesa["paybill"]["passkey"],
                },
            },
        ).raise_for_status()
        key = (
            admin.post(f"/admin/v1/merchants/{merchant['id']}/api-keys", json={"mode": "test"})
            .raise_for_status()
            .json()
        )
    return str(key["key"])


def _db_kind(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


# ----- load -----------------------------------------------------------------------------------
def run_wrk(
    server: Server,
    concurrency: int,
    duration_s: float,
    phone_offset: int,
    name: str,
    log_dir: Path,
    on_start: Callable[[Proc], None] | None = None,
) -> dict[str, Any]:
    threads = max(min(2, concurrency), 1)
    seconds = max(round(duration_s), 1)
    run_id = uuid.uuid4().hex[:10]
    proc = Proc(
        name,
        ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s",
         "--timeout", "10s", "-s", str(BENCH / "wrk_payments.lua"), server.url,
         "--", server.api_key, run_id, str(phone_offset), str(threads)],
        log_dir=log_dir,
    )
    if on_start is not None:
        on_start(proc)
    wall_start = time.time()
    proc.communicate(seconds + 30)
    wall_end = time.time()
    lines = [ln for ln in proc.log_path.read_text().splitlines() if ln.startswith("BENCH_JSON ")]
    if proc.popen.returncode != 0 or not lines:
        raise RuntimeError(f"{name} failed (exit {proc.popen.returncode}):\n{proc.log_tail()}")
    raw = json.loads(lines[-1].removeprefix("BENCH_JSON "))
    elapsed = raw["duration_us"] / 1e6
    ok = int(raw["statuses"].get("201", 0))
    return {
        "loadgen": "wrk",
        "concurrency": concurrency,
        "sent": raw["requests"],
        "ok": ok,
        "statuses": raw["statuses"],
        "errors": {k: v for k, v in raw["errors"].items() if v},
        "elapsed_s": round(elapsed, 3),
        "wall_start": wall_start,
        "wall_end": wall_end,
        "throughput": round(ok / elapsed, 1) if elapsed else 0.0,
        # wrk's percentiles cover every answer (201 or not); httpx's only the 201s.
        "latency_ms": {k: round(v / 1000, 2) for k, v in raw["latency_us"].items()},
    }


def run_load(
    server: Server,
    config: GatewayBenchConfig,
    duration_s: float,
    phone_offset: int,
    name: str,
    log_dir: Path,
    on_start: Callable[[Proc], None] | None = None,
) -> dict[str, Any]:
    if config.resolved_loadgen() == "wrk":
        return run_wrk(
            server, config.concurrency, duration_s, phone_offset, name, log_dir, on_start
        )
    spec = Spec(
        target="payments",
        base_url=server.url,
        concurrency=config.concurrency,
        duration_s=duration_s,
        api_key=server.api_key,
        phone_offset=phone_offset,
    )
    return run_loadgen(asdict(spec), name=name, log_dir=log_dir, on_start=on_start)


@contextmanager
def profiling(enabled: bool, pid: int, seconds: float, out: Path) -> Iterator[None]:
    """py-spy over the app's processes while the block runs (raw collapsed stacks)."""
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    proc = None
    if enabled and Path(spy).exists():
        proc = Proc(
            out.stem,
            [spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
             "--duration", str(max(round(seconds), 1)), "--format", "raw", "-o", str(out)],
            log_dir=out.parent,
        )
    try:
        yield
    finally:
        if proc is not None:
            try:
                proc.communicate(30)
            except RuntimeError:
                console.print(f"[yellow]py-spy did not finish: {proc.log_tail()}[/yellow]")


def profile_summary(path: Path, top: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive shares of the hottest frames of a py-spy raw profile."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] for f in stack.split(";")[1:]]
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return {}

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(frame, round(100 * n / total, 1)) for frame, n in counter.most_common(top)]

    return {"self": share(own), "inclusive": share(inclusive)}


# ----- one measurement ------------------------------------------------------------------------
def measure(
    target: str,
    database: str,
    workers: int,
    sim: SimulatorProcess,
    config: GatewayBenchConfig,
    scratch: Path,
) -> dict[str, Any]:
    logs = config.out_dir / "logs"
    label = f"{target}-{database}-w{workers}"
    url = fresh_database(database, config, scratch)
    httpx.post(f"{sim.url}/_sim/reset").raise_for_status()
    if target == "ceiling":
        server = start_ceiling(url, workers, logs)
    elif target == "provider-ceiling":
        server = start_ceiling(url, workers, logs, sim)
    else:
        server = start_gateway(url, workers, sim, config, logs)
    profile_path = config.out_dir / f"profile-{label}.txt"
    try:
        with CpuSampler(include_postgres=database == "postgres") as cpu:
            cpu.add("app", server.proc.pid)
            cpu.add("simulator", sim.proc.pid)

            def track(proc: Proc) -> None:
                cpu.add("loadgen", proc.pid)

            if config.warmup_s > 0:
                run_load(server, config, config.warmup_s, 0, f"loadgen-{label}-warm", logs, track)
            if database == "postgres":
                analyze_postgres(url)
            with profiling(
                config.profile and target == "gateway",
                server.proc.pid,
                config.duration_s,
                profile_path,
            ):
                load = run_load(
                    server, config, config.duration_s, 50_000, f"loadgen-{label}", logs, track
                )
            usage = cpu.usage(load["wall_start"], load["wall_end"])
        payments = None
        if target != "ceiling":
            time.sleep(min(config.prompt_seconds + 1.0, 5.0))  # the last callbacks land
    finally:
        server.proc.stop()
    if target == "gateway":
        payments = payment_counts(url)
    elif target == "provider-ceiling":
        payments = ceiling.counts(url)
    not_ok: dict[str, int] = {k: v for k, v in load["statuses"].items() if k != "201"}
    not_ok.update(load["errors"])
    row: dict[str, Any] = {
        "target": target,
        "database": database,
        "workers": workers,
        "loadgen": load["loadgen"],
        "concurrency": config.concurrency,
        "requests": load["sent"],
        "ok": load["ok"],
        "per_s": load["throughput"],
        "p50_ms": load["latency_ms"]["p50"],
        "p90_ms": load["latency_ms"]["p90"],
        "p99_ms": load["latency_ms"]["p99"],
        "max_ms": load["latency_ms"]["max"],
        "not_ok": not_ok or None,
        "duration_s": load["elapsed_s"],
        "payments": payments,
        **{f"cpu_{name}": pct for name, pct in usage.items()},
    }
    row["app_cpu_ms_per_ok"] = cpu_ms_per(row.get("cpu_app"), row["per_s"])
    if target == "gateway" and database == "postgres":
        row["target_met"] = row["per_s"] >= TARGET_PER_S and row["p99_ms"] < TARGET_P99_MS
    if config.profile and target == "gateway":
        row["profile"] = profile_summary(profile_path)
        row["profile_file"] = str(profile_path)
    if database == "sqlite":
        with_path = make_url(url).database
        if with_path:
            for suffix in ("", "-wal", "-shm"):
                Path(with_path + suffix).unlink(missing_ok=True)
    return row


def cpu_ms_per(cpu_pct: float | None, per_s: float) -> float | None:
    """CPU milliseconds per answer: steadier than req/s when other work shares the cores."""
    if cpu_pct is None or per_s <= 0:
        return None
    return round(cpu_pct * 10 / per_s, 2)


def run(config: GatewayBenchConfig) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    databases = list(config.databases)
    if "postgres" in databases and not postgres_reachable(config.postgres_url):
        console.print(f"[yellow]PostgreSQL unreachable at {config.postgres_url}: skipped[/yellow]")
        databases.remove("postgres")
    scratch = Path(tempfile.mkdtemp(prefix="lipwa-bench-"))
    sim = start_simulator(
        config.prompt_seconds,
        name="gw-simulator",
        log_dir=config.out_dir / "logs",
        factory=config.sim_factory,
    )
    try:
        for database in databases:
            for workers in config.workers:
                for target in config.targets:
                    console.print(f"[dim]… {target} on {database}, {workers} worker(s)[/dim]")
                    rows.append(measure(target, database, workers, sim, config, scratch))
    finally:
        sim.proc.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def report(config: GatewayBenchConfig, rows: list[dict[str, Any]]) -> Path:
    render(TITLE, rows, COLUMNS)
    console.print(
        "[dim]* pg CPU% counts every postgres process on the machine, other users' too. "
        f"Goal on PostgreSQL: ≥ {TARGET_PER_S:.0f}/s with p99 < {TARGET_P99_MS:.0f} ms.[/dim]"
    )
    for row in rows:
        top = (row.get("profile") or {}).get("inclusive")
        if top:
            console.print(f"[bold]profile {row['target']} {row['database']} "
                          f"w{row['workers']}[/bold] (inclusive % of samples)")
            for frame, pct in top[:25]:
                console.print(f"  {pct:5.1f}%  {frame}")
    meta = {
        "config": {k: str(v) for k, v in asdict(config).items()},
        "loadgen": config.resolved_loadgen(),
        "goal": {"per_s": TARGET_PER_S, "p99_ms": TARGET_P99_MS, "database": "postgres"},
    }
    return write_results(NAME, TITLE, rows, COLUMNS, meta, out_dir=config.out_dir)


def parser(defaults: GatewayBenchConfig | None = None) -> argparse.ArgumentParser:
    d = defaults or GatewayBenchConfig()
    p = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default=",".join(d.databases), help="sqlite,postgres")
    p.add_argument("--workers", default=",".join(map(str, d.workers)), help="e.g. 1,2")
    p.add_argument("--targets", default=",".join(d.targets),
                   help="ceiling,provider-ceiling,gateway")
    p.add_argument("--concurrency", type=int, default=d.concurrency)
    p.add_argument("--warmup", type=float, default=d.warmup_s, help="seconds (0: none)")
    p.add_argument("--duration", type=float, default=d.duration_s, help="measured seconds")
    p.add_argument("--loadgen", choices=("auto", "wrk", "httpx"), default=d.loadgen)
    p.add_argument("--prompt-seconds", type=float, default=d.prompt_seconds,
                   help="simulator prompt time (large: no callbacks during the run)")
    p.add_argument("--postgres-url", default=d.postgres_url)
    p.add_argument("--merchant-settings", default=json.dumps(d.merchant_settings),
                   help="JSON merchant settings (e.g. to lift rate limits)")
    p.add_argument("--gateway-env", default=json.dumps(d.gateway_env),
                   help="JSON of extra LIPWA_* variables for the gateway")
    p.add_argument("--log-level", default=d.log_level, help="gateway LIPWA_LOG_LEVEL")
    p.add_argument("--sim-factory", default=d.sim_factory)
    p.add_argument("--profile", action="store_true", help="py-spy the gateway while measured")
    p.add_argument("--out", type=Path, default=d.out_dir, help="results folder")
    return p


def config_from(args: argparse.Namespace) -> GatewayBenchConfig:
    return GatewayBenchConfig(
        databases=tuple(x for x in args.db.split(",") if x),
        workers=tuple(int(x) for x in args.workers.split(",") if x),
        targets=tuple(x for x in args.targets.split(",") if x),
        concurrency=args.concurrency,
        warmup_s=args.warmup,
        duration_s=args.duration,
        loadgen=args.loadgen,
        prompt_seconds=args.prompt_seconds,
        postgres_url=args.postgres_url,
        merchant_settings=json.loads(args.merchant_settings),
        gateway_env=json.loads(args.gateway_env),
        log_level=args.log_level,
        sim_factory=args.sim_factory,
        profile=args.profile,
        out_dir=args.out,
    )


def main(argv: list[str] | None = None) -> None:
    install_signal_handlers()
    config = config_from(parser().parse_args(argv))
    path = report(config, run(config))
    console.print(f"results: {path}")


if __name__ == "__main__":
    main()
