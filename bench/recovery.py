"""Benchmark 3: recovery after an outage — a backlog of pending payments drained by the worker.

The situation: N payments were sent to the provider and reached a final outcome there, but no
callback ever came (the provider could not reach us). Once the provider answers again, Lipwa's
recovery worker (``lipwa worker``, job ``payment_checks``) asks about each one and settles it.

Set-up, per scenario (the backlog is made directly, not through the slow API):
* the simulator in its own process, prompt_seconds 0.05 so every resource is final at once;
* a fresh migrated database; a merchant and its provider accounts made through the admin API
  of a ``lipwa serve`` process (stopped before the backlog exists, so only workers drain it),
  with a known LIPWA_ENCRYPTION_KEYS the workers share;
* N resources at the simulator: MoMo request-to-pay (own X-Reference-Id, no callback URL) and,
  in the mixed scenario, M-Pesa STK pushes whose CallBackURL is a dead port (callback lost);
* N matching ``payments`` rows (pending, send_state sent, created 10 minutes ago,
  next_check_at now) in one bulk INSERT;
* then K ``lipwa worker`` processes (LIPWA_WORKER_JOBS=payment_checks); the database is polled
  until no payment is open. Time to drain runs from the workers' start (their start-up
  included) to the poll that saw zero open.

MoMo status GETs are paced per account per process (LIPWA_MOMO_STATUS_PER_SECOND, default 10:
MTN's published limit). The "paced" rows use the default (the real-world figure); "unpaced"
rows lift it to 1000/s to show Lipwa's own ceiling. Drain times for 10,000 payments are
extrapolated from the measured rate when a row drained fewer (column "10k est.").

    python -m bench.recovery                                  # postgres, 10,000, 1 and 2 workers
    python -m bench.recovery --db sqlite --payments 2000 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from bench.common import (
    PYTHON,
    RESULTS,
    Column,
    CpuSampler,
    Proc,
    SimulatorProcess,
    console,
    free_port,
    install_signal_handlers,
    render,
    start_simulator,
    wait_ready,
    write_results,
)
from bench.gateway import analyze_postgres, postgres_reachable, recreate_postgres
from bench.loadgen import kenya_stamp, phone_suffix
from lipwa.clock import utcnow
from lipwa.domain.ids import new_id
from lipwa.services.transitions import OPEN_STATUSES
from lipwa.store.db import make_engine
from lipwa.store.migrate import upgrade
from lipwa.store.tables import Payment
from lipwa.vault import generate_key_text

NAME = "recovery"
TITLE = "Recovery after an outage: pending payments (no callback) drained by `lipwa worker`"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/lipwa_bench_recovery"
TARGET_N = 10_000  # the backlog
UNPACED = 1000  # LIPWA_MOMO_STATUS_PER_SECOND for the "unpaced" rows
COLUMNS: list[Column] = [
    ("scenario", "scenario"),
    ("database", "db"),
    ("workers", "workers"),
    ("accounts", "accts"),
    ("momo_status_per_s", "MoMo GET/s"),
    ("payments", "N"),
    ("drained", "drained"),
    ("drain_s", "drain s"),
    ("per_s", "recovered/s"),
    ("estimate_10k_s", "10k est. s"),
    ("by_query_pct", "by query %"),
    ("cpu_workers", "workers CPU%"),
    ("worker_cpu_ms_per_payment", "worker CPU ms/pay"),
    ("cpu_simulator", "sim CPU%"),
    ("cpu_postgres", "pg CPU%*"),
]


@dataclass
class Scenario:
    name: str
    providers: tuple[str, ...]  # payments spread evenly over these, round-robin
    paced: bool
    payments: int


@dataclass
class RecoveryBenchConfig:
    databases: tuple[str, ...] = ("postgres",)
    workers: tuple[int, ...] = (1, 2)
    payments: int = TARGET_N  # unpaced backlog
    paced_payments: int = 600  # default-paced backlog (10/s per account per process)
    accounts: int = 1  # MoMo accounts (and M-Pesa accounts) the backlog is spread over
    scenarios: tuple[str, ...] = ("momo-paced", "momo-unpaced", "mixed-unpaced")
    drain_timeout_s: float = 330.0
    postgres_url: str = PG_URL
    log_level: str = "WARNING"
    out_dir: Path = field(default_factory=lambda: RESULTS)

    def scenario(self, name: str) -> Scenario:
        providers = ("momo", "mpesa") if name.startswith("mixed") else ("momo",)
        paced = name.endswith("-paced")
        return Scenario(name, providers, paced, self.paced_payments if paced else self.payments)


# ----- accounts, through the admin API of a short-lived `lipwa serve` --------------------------
@dataclass
class Accounts:
    keys: str  # LIPWA_ENCRYPTION_KEYS
    ids: dict[str, list[str]]  # provider -> account ids
    merchant_id: str


def make_accounts(url: str, sim: SimulatorProcess, count: int, log_dir: Path) -> Accounts:
    upgrade(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    admin_token = uuid.uuid4().hex
    keys = generate_key_text("v1")
    proc = Proc(
        f"recovery-serve-{_db_kind(url)}",
        [PYTHON, "-m", "lipwa.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--no-migrate"],
        env={"LIPWA_DATABASE_URL": url, "LIPWA_PUBLIC_URL": base,
             "LIPWA_ADMIN_TOKEN": admin_token, "LIPWA_ENCRYPTION_KEYS": keys,
             "LIPWA_RUN_WORKER": "false", "LIPWA_REDIS_URL": "", "LIPWA_LOG_LEVEL": "WARNING"},
        log_dir=log_dir,
    )
    mpesa, momo = sim.credentials["mpesa"], sim.credentials["momo"]
    ids: dict[str, list[str]] = {"momo": [], "mpesa": []}
    try:
        wait_ready(f"{base}/health/ready", proc)
        with httpx.Client(base_url=base, timeout=30,
                          headers={"Authorization": f"Bearer {admin_token}"}) as admin:
            merchant = admin.post("/admin/v1/merchants", json={"name": "Recovery bench"})
            merchant_id = merchant.raise_for_status().json()["id"]
            for i in range(count):
                for provider, credentials in (
                    ("momo", {"api_user": momo["api_user"], "api_key": momo["api_key"],
                              "subscription_keys": momo["subscription_keys"],
                              "target_environment": "sandbox", "currency": "EUR"}),
                    ("mpesa", {"consumer_key": mpesa["consumer_key"],
                               "consumer_secret": mpesa["consumer_secret"],
                               "shortcode": mpesa["paybill"]["shortcode"], "kind": "paybill",
                               "passkey": mpesa["paybill"]["passkey"]}),
                ):
                    account = admin.post(
                        f"/admin/v1/merchants/{merchant_id}/accounts",
                        json={"provider": provider, "environment": "sandbox",
                              "label": f"{provider} {i} (simulator)", "base_url": sim.url,
                              "credentials": credentials},
                    ).raise_for_status().json()
                    ids[provider].append(account["id"])
    finally:
        proc.stop()
    return Accounts(keys, ids, merchant_id)


# ----- the backlog: resources at the simulator, rows in the database ---------------------------
async def _momo_resources(sim: SimulatorProcess, n: int, concurrency: int = 32) -> list[str]:
    momo = sim.credentials["momo"]
    subscription = momo["subscription_keys"]["collection"]
    refs = [str(uuid.uuid4()) for _ in range(n)]
    async with httpx.AsyncClient(base_url=sim.url, timeout=30) as client:
        token = (await client.post(
            "/collection/token/", auth=(momo["api_user"], momo["api_key"]),
            headers={"Ocp-Apim-Subscription-Key": subscription},
        )).raise_for_status().json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Ocp-Apim-Subscription-Key": subscription,
                   "X-Target-Environment": "sandbox"}

        async def one(i: int) -> None:
            body = {"amount": "10", "currency": "EUR", "externalId": f"r{i}",
                    "payer": {"partyIdType": "MSISDN", "partyId": "25078" + phone_suffix(i)},
                    "payerMessage": "bench", "payeeNote": "bench"}
            # No X-Callback-Url: the outcome is only learnt by asking.
            response = await client.post("/collection/v1_0/requesttopay", json=body,
                                         headers={**headers, "X-Reference-Id": refs[i]})
            if response.status_code != 202:
                raise RuntimeError(f"request-to-pay: HTTP {response.status_code} {response.text}")

        await _bounded(n, concurrency, one)
    return refs


async def _stk_resources(sim: SimulatorProcess, n: int, concurrency: int = 32) -> list[str]:
    mpesa = sim.credentials["mpesa"]
    code, passkey = mpesa["paybill"]["shortcode"], mpesa["paybill"]["passkey"]
    dead = f"http://127.0.0.1:{free_port()}"  # nobody listens: every callback is lost
    refs = [""] * n
    async with httpx.AsyncClient(base_url=sim.url, timeout=30) as client:
        token = (await client.get(
            "/oauth/v1/generate", params={"grant_type": "client_credentials"},
            auth=(mpesa["consumer_key"], mpesa["consumer_secret"]),
        )).raise_for_status().json()["access_token"]

        async def one(i: int) -> None:
            stamp = kenya_stamp()
            phone = "254708" + phone_suffix(i)
            body = {"BusinessShortCode": code,
                    "Password": base64.b64encode(f"{code}{passkey}{stamp}".encode()).decode(),
                    "Timestamp": stamp, "TransactionType": "CustomerPayBillOnline",
                    "Amount": 10, "PartyA": phone, "PartyB": code, "PhoneNumber": phone,
                    "CallBackURL": f"{dead}/cb/{i}", "AccountReference": f"r{i}",
                    "TransactionDesc": "bench"}
            response = await client.post("/mpesa/stkpush/v1/processrequest", json=body,
                                         headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 200:
                raise RuntimeError(f"STK push: HTTP {response.status_code} {response.text}")
            refs[i] = response.json()["CheckoutRequestID"]

        await _bounded(n, concurrency, one)
    return refs


async def _bounded(n: int, concurrency: int, one: Any) -> None:
    queue = iter(range(n))

    async def runner() -> None:
        for i in queue:
            await one(i)

    await asyncio.gather(*(runner() for _ in range(min(concurrency, n) or 1)))


def make_backlog(
    url: str, sim: SimulatorProcess, accounts: Accounts, scenario: Scenario
) -> dict[str, int]:
    """N resources at the simulator and N pending rows; returns payments per provider."""
    per_provider = {p: scenario.payments // len(scenario.providers) for p in scenario.providers}
    per_provider[scenario.providers[0]] += scenario.payments - sum(per_provider.values())

    async def build() -> None:
        refs: dict[str, list[str]] = {}
        if per_provider.get("momo"):
            refs["momo"] = await _momo_resources(sim, per_provider["momo"])
        if per_provider.get("mpesa"):
            refs["mpesa"] = await _stk_resources(sim, per_provider["mpesa"])
        await asyncio.sleep(1.0)  # prompt_seconds 0.05: every outcome is final by now
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for provider, provider_refs in refs.items():
            account_ids = accounts.ids[provider]
            for i, ref in enumerate(provider_refs):
                momo = provider == "momo"
                rows.append({
                    "id": new_id("pay"), "merchant_id": accounts.merchant_id,
                    "account_id": account_ids[i % len(account_ids)], "mode": "test",
                    "provider": provider, "channel": "prompt", "status": "pending",
                    "amount": Decimal(10), "currency": "EUR" if momo else "KES",
                    "phone": ("25078" if momo else "254708") + phone_suffix(i),
                    "network": "mtn_rw" if momo else "safaricom",
                    "reference": f"r{i}", "description": "", "provider_reference": f"r{i}",
                    "provider_description": "bench", "meta": {},
                    "provider_request_id": ref if momo else uuid.uuid4().hex,
                    "provider_ref": ref, "send_state": "sent", "check_attempts": 0,
                    "next_check_at": now, "created_at": now - timedelta(minutes=10),
                    "updated_at": now - timedelta(minutes=10),
                })
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                for start in range(0, len(rows), 2000):
                    await conn.execute(insert(Payment), rows[start:start + 2000])
        finally:
            await engine.dispose()

    asyncio.run(build())
    return per_provider


# ----- draining --------------------------------------------------------------------------------
async def _poll(url: str) -> tuple[int, dict[str, int], dict[str, int]]:
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            open_n = (await conn.execute(
                select(func.count()).select_from(Payment).where(
                    Payment.status.in_(OPEN_STATUSES))
            )).scalar_one()
            statuses = {str(s): int(n) for s, n in await conn.execute(
                select(Payment.status, func.count()).group_by(Payment.status))}
            resolved = {str(r): int(n) for r, n in await conn.execute(
                select(Payment.resolved_by, func.count()).group_by(Payment.resolved_by))}
        return int(open_n), statuses, resolved
    finally:
        await engine.dispose()


def drain(
    url: str, accounts: Accounts, scenario: Scenario, workers: int, config: RecoveryBenchConfig,
    sim: SimulatorProcess, label: str,
) -> dict[str, Any]:
    logs = config.out_dir / "logs"
    env = {
        "LIPWA_DATABASE_URL": url, "LIPWA_PUBLIC_URL": "http://127.0.0.1:9",
        "LIPWA_ENCRYPTION_KEYS": accounts.keys, "LIPWA_WORKER_JOBS": "payment_checks",
        "LIPWA_REDIS_URL": "", "LIPWA_LOG_LEVEL": config.log_level, "LIPWA_LOG_JSON": "true",
    }
    if not scenario.paced:
        env["LIPWA_MOMO_STATUS_PER_SECOND"] = str(UNPACED)
    procs: list[Proc] = []
    open_n, statuses, resolved = asyncio.run(_poll(url))
    with CpuSampler(include_postgres=url.startswith("postgres")) as cpu:
        cpu.add("simulator", sim.proc.pid)
        start = time.time()
        try:
            for k in range(workers):
                proc = Proc(f"{label}-worker{k}", [PYTHON, "-m", "lipwa.cli", "worker"],
                            env=env, log_dir=logs)
                procs.append(proc)
                cpu.add(f"worker{k}", proc.pid)
            deadline = time.monotonic() + config.drain_timeout_s
            while open_n and time.monotonic() < deadline:
                time.sleep(0.5)
                dead = [p for p in procs if not p.alive()]
                if dead:
                    raise RuntimeError(f"{dead[0].name} exited:\n{dead[0].log_tail()}")
                open_n, statuses, resolved = asyncio.run(_poll(url))
            end = time.time()
            cpu.sample()
            usage = cpu.usage(start, end)
        finally:
            for proc in procs:
                proc.stop()
    elapsed = end - start
    done = scenario.payments - open_n
    per_s = round(done / elapsed, 1) if elapsed > 0 else 0.0
    worker_cpu = round(sum(v for k, v in usage.items() if k.startswith("worker")), 1)
    row: dict[str, Any] = {
        "drained": open_n == 0,
        "open_left": open_n,
        "recovered": done,
        "drain_s": round(elapsed, 1),
        "per_s": per_s,
        "estimate_10k_s": round(TARGET_N / per_s, 0) if per_s and (
            open_n or scenario.payments != TARGET_N) else None,
        "by_query_pct": round(100 * resolved.get("query", 0) / done, 1) if done else 0.0,
        "resolved_by": {k: v for k, v in resolved.items() if k != "None"},
        "statuses": statuses,
        "cpu_workers": worker_cpu,
        "worker_cpu_ms_per_payment": round(worker_cpu * 10 / per_s, 2) if per_s else None,
        "cpu_simulator": usage.get("simulator"),
        "cpu_postgres": usage.get("postgres"),
    }
    return row


# ----- one measurement -------------------------------------------------------------------------
def fresh_database(kind: str, config: RecoveryBenchConfig, scratch: Path) -> str:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{scratch / f'recovery-{uuid.uuid4().hex[:8]}.db'}"
    recreate_postgres(config.postgres_url)
    return config.postgres_url


def measure(
    scenario: Scenario, database: str, workers: int, sim: SimulatorProcess,
    config: RecoveryBenchConfig, scratch: Path,
) -> dict[str, Any]:
    label = f"recovery-{scenario.name}-{database}-w{workers}"
    url = fresh_database(database, config, scratch)
    httpx.post(f"{sim.url}/_sim/reset").raise_for_status()
    httpx.put(f"{sim.url}/_sim/settings", json={"prompt_seconds": 0.05}).raise_for_status()
    accounts = make_accounts(url, sim, config.accounts, config.out_dir / "logs")
    made = time.perf_counter()
    per_provider = make_backlog(url, sim, accounts, scenario)
    if database == "postgres":
        analyze_postgres(url)  # the bulk-inserted backlog, planned as in a database in service
    backlog_s = time.perf_counter() - made
    row: dict[str, Any] = {
        "scenario": scenario.name,
        "database": database,
        "workers": workers,
        "accounts": config.accounts,
        "momo_status_per_s": UNPACED if not scenario.paced else 10,
        "payments": scenario.payments,
        "by_provider": per_provider,
        "backlog_setup_s": round(backlog_s, 1),
    }
    row.update(drain(url, accounts, scenario, workers, config, sim, label))
    if database == "sqlite":
        path = make_url(url).database
        for suffix in ("", "-wal", "-shm"):
            if path:
                Path(path + suffix).unlink(missing_ok=True)
    return row


def run(config: RecoveryBenchConfig) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    databases = list(config.databases)
    if "postgres" in databases and not postgres_reachable(config.postgres_url):
        console.print(f"[yellow]PostgreSQL unreachable at {config.postgres_url}: skipped[/yellow]")
        databases.remove("postgres")
    scratch = Path(tempfile.mkdtemp(prefix="lipwa-bench-recovery-"))
    sim = start_simulator(0.05, name="recovery-simulator", log_dir=config.out_dir / "logs")
    try:
        for database in databases:
            for name in config.scenarios:
                for workers in config.workers:
                    scenario = config.scenario(name)
                    console.print(f"[dim]… {name}: {scenario.payments} payments on {database}, "
                                  f"{workers} worker(s)[/dim]")
                    rows.append(measure(scenario, database, workers, sim, config, scratch))
    finally:
        sim.proc.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def report(config: RecoveryBenchConfig, rows: list[dict[str, Any]]) -> Path:
    render(TITLE, rows, COLUMNS)
    console.print(
        "[dim]paced: MoMo status GETs at the default 10/s per account per process (MTN's "
        f"limit; the real-world figure). unpaced: LIPWA_MOMO_STATUS_PER_SECOND={UNPACED}, "
        "Lipwa's own ceiling. 10k est.: 10,000 / measured rate (an extrapolation). "
        "* pg CPU% counts every postgres process on the machine.[/dim]"
    )
    meta = {"config": {k: str(v) for k, v in asdict(config).items()}, "target_payments": TARGET_N}
    return write_results(NAME, TITLE, rows, COLUMNS, meta, out_dir=config.out_dir)


def parser(defaults: RecoveryBenchConfig | None = None) -> argparse.ArgumentParser:
    d = defaults or RecoveryBenchConfig()
    p = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default=",".join(d.databases), help="sqlite,postgres")
    p.add_argument("--workers", default=",".join(map(str, d.workers)), help="e.g. 1,2")
    p.add_argument("--payments", type=int, default=d.payments, help="unpaced backlog size")
    p.add_argument("--paced-payments", type=int, default=d.paced_payments,
                   help="backlog size of the default-paced rows")
    p.add_argument("--accounts", type=int, default=d.accounts,
                   help="provider accounts (of each provider) the backlog is spread over")
    p.add_argument("--scenarios", default=",".join(d.scenarios),
                   help="momo-paced,momo-unpaced,mixed-unpaced (mixed-paced also works)")
    p.add_argument("--drain-timeout", type=float, default=d.drain_timeout_s, help="seconds")
    p.add_argument("--postgres-url", default=d.postgres_url)
    p.add_argument("--log-level", default=d.log_level, help="workers' LIPWA_LOG_LEVEL")
    p.add_argument("--out", type=Path, default=d.out_dir, help="results folder")
    return p


def config_from(args: argparse.Namespace) -> RecoveryBenchConfig:
    name = make_url(args.postgres_url).database or ""
    if not name.startswith("lipwa_bench"):
        raise SystemExit(f"refusing database {name!r}: use a lipwa_bench* name")
    return RecoveryBenchConfig(
        databases=tuple(x for x in args.db.split(",") if x),
        workers=tuple(int(x) for x in args.workers.split(",") if x),
        payments=args.payments,
        paced_payments=args.paced_payments,
        accounts=args.accounts,
        scenarios=tuple(x for x in args.scenarios.split(",") if x),
        drain_timeout_s=args.drain_timeout,
        postgres_url=args.postgres_url,
        log_level=args.log_level,
        out_dir=args.out,
    )


def _db_kind(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


def main(argv: list[str] | None = None) -> None:
    install_signal_handlers()
    config = config_from(parser().parse_args(argv))
    path = report(config, run(config))
    console.print(f"results: {path}")


if __name__ == "__main__":
    main()
