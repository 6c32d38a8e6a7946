"""Count the SQL statements one payment costs, and the gateway's CPU for it (a diagnostic).

    python -m bench.statements [--payments 50] [--db sqlite|postgres] [--out bench/results]

The gateway runs in this process (a thread) so every statement can be counted; the simulator
runs in its own process. Payments are sent one at a time and their callbacks awaited, so the
counts per payment cover the initiation and the callback that settles it. The gateway
thread's own CPU clock gives its CPU per payment: with no concurrency and no other process
in it, a steadier figure for comparing code than a load test's (PostgreSQL's driver runs in
that thread; SQLite's runs in threads of its own, so the SQLite figure leaves it out).
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.engine import Engine

from bench.common import (
    RESULTS,
    console,
    install_signal_handlers,
    markdown_table,
    start_simulator,
    write_results,
)
from bench.gateway import LIFTED_LIMITS, PG_URL, bootstrap_merchant, recreate_postgres
from lipwa.observability import configure_logging
from lipwa.simulator.testing import serve_in_thread
from lipwa.store.migrate import upgrade
from lipwa.vault import generate_key_text

_FIRST = re.compile(r"^\s*(\w+)(?:.*?\b(?:FROM|INTO|UPDATE)\s+\"?(\w+))?", re.S | re.I)


class StatementCounter:
    def __init__(self) -> None:
        self.by_kind: Counter[str] = Counter()
        self.total = 0
        self.enabled = False

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not self.enabled:
            return
        self.total += 1
        match = _FIRST.match(statement)
        verb = (match.group(1) if match else "?").upper()
        table = (match.group(2) or "") if match else ""
        self.by_kind[f"{verb} {table}".strip()] += 1


def run(payments: int, database: str) -> dict[str, Any]:
    from lipwa.api.app import create_app
    from lipwa.config import Settings

    # Log as `lipwa serve` does (JSON at INFO), its CPU counted, its lines thrown away.
    devnull = open(os.devnull, "w")  # noqa: SIM115 - open for the whole run, closed below
    configure_logging("INFO", json_output=True, stream=devnull)
    counter = StatementCounter()
    event.listen(Engine, "before_cursor_execute", counter)
    scratch = Path(tempfile.mkdtemp(prefix="lipwa-stmts-"))
    if database == "postgres":
        recreate_postgres(PG_URL)
        url = PG_URL
    else:
        url = f"sqlite+aiosqlite:///{scratch / 'stmts.db'}"
    upgrade(url)
    sim = start_simulator(0.05, name="stmts-simulator")
    try:
        from lipwa.simulator.testing import free_port

        port = free_port()
        admin = uuid.uuid4().hex
        settings = Settings(
            database_url=url,
            public_url=f"http://127.0.0.1:{port}",
            admin_token=admin,
            encryption_keys=generate_key_text("v1"),
            log_level="INFO",
            rate_limit_api_key="1000000/second",
            rate_limit_prompts="1000000/second",
            run_worker=False,  # count what a payment costs, not the worker's polling
        )
        with serve_in_thread(create_app(settings), port=port) as gateway:
            key = bootstrap_merchant(gateway, admin, sim, LIFTED_LIMITS)
            headers = {"Authorization": f"Bearer {key}"}
            clock = _thread_clock(f"uvicorn-{port}")
            cpu_s = 0.0
            with httpx.Client(base_url=gateway, headers=headers, timeout=30) as client:
                # One warm-up payment (token fetch, caches), then the counted ones.
                for i in range(payments + 1):
                    if i == 1:
                        counter.enabled = True
                    before = time.clock_gettime(clock)
                    answer = client.post(
                        "/v1/payments",
                        json={"amount": "10", "currency": "KES",
                              "phone": f"0708{i:05d}5", "reference": f"s{i}"},
                        headers={"Idempotency-Key": uuid.uuid4().hex},
                    )
                    answer.raise_for_status()
                    time.sleep(0.3)  # prompt_seconds is 0.05: the callback lands meanwhile
                    if i >= 1:
                        cpu_s += time.clock_gettime(clock) - before
                counter.enabled = False
    finally:
        sim.proc.stop()
        event.remove(Engine, "before_cursor_execute", counter)
        devnull.close()
    return {
        "payments": payments,
        "total": counter.total,
        "by_kind": dict(counter.by_kind),
        "gateway_cpu_ms_per_payment": round(1000 * cpu_s / payments, 2),
    }


def _thread_clock(name: str) -> int:
    """The CPU clock of the thread called ``name``."""
    thread = next(t for t in threading.enumerate() if t.name == name)
    assert thread.ident is not None
    return time.pthread_getcpuclockid(thread.ident)


def main(argv: list[str] | None = None) -> None:
    install_signal_handlers()
    p = argparse.ArgumentParser(prog="python -m bench.statements", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--payments", type=int, default=30)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = p.parse_args(argv)
    result = run(args.payments, args.db)
    n = result["payments"]
    rows = [
        {"statement": kind, "per_payment": round(count / n, 2)}
        for kind, count in sorted(result["by_kind"].items(), key=lambda kv: -kv[1])
    ]
    rows.append({"statement": "TOTAL", "per_payment": round(result["total"] / n, 2)})
    columns = [("statement", "statement"), ("per_payment", "per payment")]
    cpu = result["gateway_cpu_ms_per_payment"]
    title = (f"SQL statements per payment, {args.db} ({n} payments, callbacks included; "
             f"gateway CPU {cpu} ms per payment)")
    write_results("statements", title, rows, columns, {"database": args.db, **result},
                  out_dir=args.out)
    console.print(markdown_table(rows, columns))
    console.print(f"gateway CPU per payment (initiation and callback, its own thread): {cpu} ms")


if __name__ == "__main__":
    main()
