"""The chaos scenario: real processes on loopback, faults on, crashes mid-run, then the facts.

PostgreSQL: the simulator (``lipwa simulate`` with fault flags), two API processes (uvicorn on
``create_app``, no embedded worker, each with its own public URL so callbacks reach both), two
``lipwa worker`` processes, the merchant's webhook receiver, and the load generator here. At
``KILL_AT`` of the payments one worker is SIGKILLed (and not restarted: the other carries on);
at ``RESTART_AT`` PostgreSQL is restarted. SQLite: one gateway process with the worker
embedded; it is SIGKILLed at ``KILL_AT`` and started again on the same port.

Then faults are turned off and the workers drain; the facts are read from the database, the
simulator (/_sim/transactions, /_sim/requests, /_sim/callbacks) and the receiver.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lipwa.demo import bootstrap_demo_merchant
from lipwa.store.migrate import upgrade
from lipwa.vault import generate_key_text
from tests.chaos import checks, database
from tests.chaos.database import PgRestart
from tests.chaos.loadgen import LoadGenerator, PaymentResult, plan_payments
from tests.chaos.procs import Proc, free_port, lipwa_args, stop_all, uvicorn_args, wait_http

FAULTS: dict[str, float] = {
    "callback_drop_pct": 30,
    "callback_duplicate_pct": 20,
    "callback_delay_min_s": 0,
    "callback_delay_max_s": 3,
    "callback_reorder_pct": 10,
    "error_pct": 10,
}
NO_FAULTS = dict.fromkeys(FAULTS, 0)
PROMPT_SECONDS = 1.0
RECEIVER_FAIL_PCT = 5.0
KILL_AT = 0.35
RESTART_AT = 0.6

# Process settings of every gateway process: guards lifted for one merchant paying thousands
# of times (as tests/gateway/conftest.py does), recovery and webhook retries on a short clock
# so the run drains in seconds, and leases short enough that a killed worker's claims come
# back soon. Everything else is the production default.
GATEWAY_ENV: dict[str, str] = {
    "LIPWA_LOG_LEVEL": "WARNING",
    "LIPWA_LOG_JSON": "true",
    "LIPWA_DOCS": "false",
    "LIPWA_RATE_LIMIT_API_KEY": "1000000/second",
    "LIPWA_RATE_LIMIT_PROMPTS": "1000000/second",
    "LIPWA_PAYER_LOCK_S": "0",
    "LIPWA_SAME_AMOUNT_WINDOW_S": "0",
    "LIPWA_DUPLICATE_WINDOW_S": "0",
    "LIPWA_PROVIDER_READ_TIMEOUT_S": "10",
    "LIPWA_IDEMPOTENCY_WAIT_S": "3",
    "LIPWA_FIRST_CHECK_AFTER_S": "3",
    "LIPWA_CHECK_BACKOFF_INITIAL_S": "1",
    "LIPWA_CHECK_BACKOFF_MAX_S": "4",
    "LIPWA_STALE_SEND_AFTER_S": "15",  # longer than a MoMo send with its retries
    # Short, so that an ambiguous request-to-pay MoMo never got fails within the drain
    # (after window + stale send: 45 s).
    "LIPWA_MOMO_APPROVAL_WINDOW_S": "30",
    "LIPWA_CHECK_LEASE_S": "10",
    "LIPWA_MOMO_STATUS_PER_SECOND": "50",
    "LIPWA_CIRCUIT_COOLDOWN_S": "1",
    # Fewer parallel checks and sends than the defaults (10 and 20): each holds a database
    # connection, and every process may open 40 (lipwa.store.db.make_engine), so four
    # processes at the defaults can take all 100 of a default PostgreSQL. The delivery lease
    # (timeout x batches of 100 / concurrency + 30 s) decides how soon a killed worker's
    # claimed deliveries go out again: 1 s x 10 + 30 s = 40 s.
    "LIPWA_RECOVERY_CONCURRENCY": "5",
    "LIPWA_WEBHOOK_CONCURRENCY": "10",
    "LIPWA_WEBHOOK_TIMEOUT_S": "1",
    "LIPWA_WEBHOOK_RETRY_BASE_S": "0.5",
    "LIPWA_WEBHOOK_RETRY_CAP_S": "3",
}


@dataclass(frozen=True)
class ChaosConfig:
    backend: str  # postgres | sqlite
    database_url: str
    payments: int
    seed: int
    concurrency: int
    api_processes: int
    worker_processes: int  # 0: the (single) API process embeds the worker
    log_dir: Path
    restart: PgRestart | None = None
    load_budget_s: float = 180.0  # payments not started by then are not sent (reported)
    drain_timeout_s: float = 90.0


@dataclass
class Timings:
    started: float = field(default_factory=time.monotonic)
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic() - self.started


@dataclass
class ChaosRun:
    config: ChaosConfig
    facts: checks.Facts
    timings: Timings
    load_s: float
    drained: bool
    drain_left: dict[str, int]
    restart_info: str
    restart_down_s: float
    killed: str
    injected: dict[str, int] | None


class Cluster:
    """The processes of one run, always stopped by ``close``."""

    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.admin_token = secrets.token_urlsafe(24)
        self.keys = generate_key_text("v1")
        self.sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.api_ports = [free_port() for _ in range(config.api_processes)]
        self.api_urls = [f"http://127.0.0.1:{p}" for p in self.api_ports]
        self.receiver_url = f"http://127.0.0.1:{free_port()}"
        self.apis: list[Proc] = []
        self.workers: list[Proc] = []
        self.simulator: Proc | None = None
        self.receiver: Proc | None = None

    def gateway_env(self, public_url: str, embedded_worker: bool) -> dict[str, str]:
        env = dict(GATEWAY_ENV)
        env.update(
            LIPWA_DATABASE_URL=self.config.database_url,
            LIPWA_PUBLIC_URL=public_url,
            LIPWA_ADMIN_TOKEN=self.admin_token,
            LIPWA_ENCRYPTION_KEYS=self.keys,
            LIPWA_RUN_WORKER="true" if embedded_worker else "false",
        )
        return env

    def start_simulator(self) -> None:
        flags = {
            "--drop": FAULTS["callback_drop_pct"],
            "--duplicate": FAULTS["callback_duplicate_pct"],
            "--delay-min": FAULTS["callback_delay_min_s"],
            "--delay-max": FAULTS["callback_delay_max_s"],
            "--reorder": FAULTS["callback_reorder_pct"],
            "--errors": FAULTS["error_pct"],
        }
        args = lipwa_args(
            "simulate",
            "--port",
            str(self.sim_port),
            "--seed",
            str(self.config.seed),
            "--prompt-seconds",
            str(PROMPT_SECONDS),
            "--momo-callback-host",
            "127.0.0.1",
        )
        for flag, value in flags.items():
            args += [flag, str(value)]
        self.simulator = Proc("simulator", args, env={}, log_dir=self.config.log_dir)
        wait_http(f"{self.sim_url}/_sim/faults", self.simulator)

    def start_api(self, index: int, suffix: str = "") -> Proc:
        proc = Proc(
            f"api{index + 1}{suffix}",
            lipwa_args("serve", "--no-migrate", "--port", str(self.api_ports[index])),
            env=self.gateway_env(self.api_urls[index], self.config.worker_processes == 0),
            log_dir=self.config.log_dir,
        )
        if index < len(self.apis):
            self.apis[index] = proc
        else:
            self.apis.append(proc)
        return proc

    def start_worker(self, index: int) -> Proc:
        proc = Proc(
            f"worker{index + 1}",
            lipwa_args("worker"),
            env=self.gateway_env(self.api_urls[0], False),
            log_dir=self.config.log_dir,
        )
        self.workers.append(proc)
        return proc

    def start_receiver(self, secret: str) -> None:
        port = int(self.receiver_url.rsplit(":", 1)[1])
        self.receiver = Proc(
            "receiver",
            uvicorn_args("tests.chaos.receiver:create_app", port),
            env={
                "CHAOS_WEBHOOK_SECRET": secret,
                "CHAOS_FAIL_PCT": str(RECEIVER_FAIL_PCT),
                "CHAOS_SEED": str(self.config.seed),
            },
            log_dir=self.config.log_dir,
        )
        wait_http(f"{self.receiver_url}/live", self.receiver)

    def close(self) -> None:
        for proc in [*self.workers, *self.apis, self.receiver, self.simulator]:
            if proc is not None:
                proc.stop()
        stop_all()


@contextmanager
def cluster(config: ChaosConfig) -> Iterator[Cluster]:
    c = Cluster(config)
    try:
        yield c
    finally:
        c.close()


def _open_work(url: str) -> dict[str, int]:
    """Work still to do: open payments still scheduled, undelivered webhooks, callbacks."""
    row = database.rows(
        url,
        "SELECT "
        "(SELECT count(*) FROM payments WHERE status IN ('pending', 'unknown') "
        "  AND next_check_at IS NOT NULL) AS open_payments, "
        "(SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS deliveries, "
        "(SELECT count(*) FROM inbound_callbacks WHERE processed_at IS NULL) AS callbacks",
    )[0]
    return {k: int(v) for k, v in row.items()}


def _sim_callbacks_in_flight(sim_url: str) -> int:
    rows = httpx.get(f"{sim_url}/_sim/callbacks", timeout=60).json()["callbacks"]
    return sum(1 for c in rows if not c["dropped"] and c["delivered_at"] is None)


def drain(config: ChaosConfig, c: Cluster) -> tuple[bool, dict[str, int]]:
    """Wait until nothing is left to do (twice in a row), or the drain timeout."""
    deadline = time.monotonic() + config.drain_timeout_s
    quiet = 0
    left: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            left = _open_work(config.database_url)
            left["sim_callbacks"] = _sim_callbacks_in_flight(c.sim_url)
        except Exception as exc:  # a read that failed is not quiet
            left = {"error": 1}
            print(f"chaos drain: {type(exc).__name__}: {exc}")
        quiet = quiet + 1 if not any(left.values()) else 0
        if quiet >= 2:
            return True, left
        time.sleep(1.0)
    return False, left


def collect(config: ChaosConfig, c: Cluster, results: list[PaymentResult]) -> checks.Facts:
    url = config.database_url
    sim = httpx.Client(base_url=c.sim_url, timeout=120)
    with sim:
        transactions = sim.get("/_sim/transactions").json()
        requests = sim.get("/_sim/requests").json()["requests"]
        callbacks = sim.get("/_sim/callbacks").json()["callbacks"]
    for r in requests:  # headers are large and only the reference id is needed
        r["headers"] = {"x-reference-id": r["headers"].get("x-reference-id")}
    receiver = httpx.get(f"{c.receiver_url}/state", timeout=60).json()
    events = database.rows(
        url, "SELECT id, type, resource_id, created_at, data FROM events ORDER BY created_at, id"
    )
    for e in events:
        if isinstance(e["data"], str):
            e["data"] = json.loads(e["data"])
    facts = checks.Facts(
        results=results,
        payments=database.rows(
            url,
            "SELECT id, reference, provider, status, amount, currency, phone, receipt, "
            "provider_ref, provider_request_id, send_state, failure_code, resolved_by, "
            "next_check_at FROM payments",
        ),
        events=events,
        deliveries=database.rows(url, "SELECT event_id, status, attempts FROM webhook_deliveries"),
        webhook_attempts=int(
            database.rows(url, "SELECT count(*) AS n FROM webhook_attempts")[0]["n"]
        ),
        inbound=database.rows(
            url, "SELECT id, kind, payment_id, outcome, detail, processed_at FROM inbound_callbacks"
        ),
        anomalies=database.rows(url, "SELECT payment_id, kind FROM anomalies"),
        idempotency=database.rows(
            url, "SELECT key, state, response_status, response_body FROM idempotency_keys"
        ),
        sim_transactions=transactions,
        sim_requests=requests,
        sim_callbacks=callbacks,
        receiver=receiver,
    )
    dump = {k: v for k, v in vars(facts).items() if k not in ("results", "sim_requests")}
    dump["results"] = [
        {
            **vars(r.spec),
            "payment_ids": sorted(r.payment_ids),
            "statuses": r.statuses,
            "abandoned": r.abandoned,
        }
        for r in results
    ]
    (config.log_dir / "facts.json").write_text(json.dumps(dump, default=str))
    return facts


def _create_endpoint(api_url: str, api_key: str, receiver_url: str) -> str:
    response = httpx.post(
        f"{api_url}/v1/webhook-endpoints",
        json={"url": f"{receiver_url}/hook", "event_types": ["*"]},
        headers={"Authorization": f"Bearer {api_key}", "Idempotency-Key": str(uuid.uuid4())},
        timeout=60,
    )
    response.raise_for_status()
    return str(response.json()["secret"])


def _wait_heartbeats(url: str, count: int, workers: list[Proc], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"{w.name} exited early:\n{w.log_tail()}")
        if database.rows(url, "SELECT count(*) AS n FROM worker_heartbeats")[0]["n"] >= count:
            return
        time.sleep(0.3)
    raise RuntimeError("the workers did not start:\n" + "\n".join(w.log_tail() for w in workers))


def run(config: ChaosConfig) -> ChaosRun:
    timings = Timings()
    config.log_dir.mkdir(parents=True, exist_ok=True)
    upgrade(config.database_url)
    with cluster(config) as c:
        c.start_simulator()
        for i in range(config.api_processes):
            c.start_api(i)
        for i, api in enumerate(c.apis):
            wait_http(f"{c.api_urls[i]}/health/ready", api, timeout_s=90)
        demo = bootstrap_demo_merchant(c.api_urls[0], c.admin_token, c.sim_url, name="Chaos")
        api_key = demo["api_key"]
        c.start_receiver(_create_endpoint(c.api_urls[0], api_key, c.receiver_url))
        for i in range(config.worker_processes):
            c.start_worker(i)
        _wait_heartbeats(config.database_url, config.worker_processes or 1, c.workers or c.apis)
        timings.mark("setup")

        killed = ""

        async def kill() -> None:
            nonlocal killed
            if c.workers:
                c.workers[0].kill()
                killed = f"{c.workers[0].name} SIGKILLed at {timings_now(timings):.0f} s"
                return
            c.apis[0].kill()  # the one process: API and worker
            killed = f"{c.apis[0].name} (API + worker) SIGKILLed at {timings_now(timings):.0f} s"
            await asyncio.to_thread(_restart_api, c, 0)
            killed += f", back at {timings_now(timings):.0f} s"

        restart_info = ""

        async def restart_db() -> None:
            nonlocal restart_info
            assert config.restart is not None
            at = timings_now(timings)
            await asyncio.to_thread(config.restart.restart)
            restart_info = f"{config.restart.describe()} at {at:.0f} s"

        milestones: list[tuple[float, Callable[[], Coroutine[Any, Any, None]]]] = [(KILL_AT, kill)]
        if config.restart is not None:
            milestones.append((RESTART_AT, restart_db))
        specs = plan_payments(config.payments, config.seed)
        loadgen = LoadGenerator(c.api_urls, api_key, config.concurrency, config.load_budget_s)
        results = asyncio.run(loadgen.run(specs, milestones))
        load_s = loadgen.finished_at - loadgen.started_at
        timings.mark("load")

        faults_off_at = time.time()
        httpx.put(f"{c.sim_url}/_sim/faults", json=NO_FAULTS, timeout=30).raise_for_status()
        drained, left = drain(config, c)
        timings.mark("drain")
        facts = collect(config, c, results)
        timings.mark("collect")
    injected = checks.injected_5xx(
        facts.sim_requests, config.seed, faults_off_at, FAULTS["error_pct"]
    )
    return ChaosRun(
        config=config,
        facts=facts,
        timings=timings,
        load_s=load_s,
        drained=drained,
        drain_left=left,
        restart_info=restart_info,
        restart_down_s=config.restart.down_s if config.restart else 0.0,
        killed=killed,
        injected=injected,
    )


def timings_now(timings: Timings) -> float:
    return time.monotonic() - timings.started


def _restart_api(c: Cluster, index: int) -> None:
    proc = c.start_api(index, suffix="-restarted")
    wait_http(f"{c.api_urls[index]}/health/ready", proc, timeout_s=90)
