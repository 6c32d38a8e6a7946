"""The worker: loops that claim due work from the database until told to stop.

Due work is state, not a queue: a payment carries ``next_check_at``, a delivery carries
``next_attempt_at``. Each job claims a batch (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on
SQLite the single writer lock serialises claims), works it, and reports how much it did.
Any number of workers can run beside any number of API processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from lipwa.clock import utcnow
from lipwa.container import Container
from lipwa.store.tables import WorkerHeartbeat

log = structlog.get_logger("lipwa.worker")


@dataclass(frozen=True)
class Job:
    """One kind of due work. ``run_once`` returns how many items it handled."""

    name: str
    run_once: Callable[[Container], Awaitable[int]]
    idle_s: float = 1.0  # sleep when nothing was due


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def heartbeat(container: Container, ident: str, started: object) -> None:
    now = utcnow()
    values = {"worker_id": ident, "started_at": started, "last_seen_at": now, "detail": {}}
    insert = pg_insert if container.engine.dialect.name == "postgresql" else sqlite_insert
    statement = insert(WorkerHeartbeat).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["worker_id"], set_={"last_seen_at": now}
    )
    async with container.sessions() as session, session.begin():
        await session.execute(statement)


async def _loop(container: Container, job: Job, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            done = await job.run_once(container)
        except Exception:
            log.exception("job_failed", job=job.name)
            done = 0
        if done == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=job.idle_s)


async def run_worker(container: Container, jobs: Sequence[Job], stop: asyncio.Event) -> None:
    """Run every job's loop until ``stop`` is set; beat a heartbeat every few seconds."""
    ident = worker_id()
    started = utcnow()

    async def beat() -> None:
        while not stop.is_set():
            try:
                await heartbeat(container, ident, started)
            except Exception:
                log.exception("heartbeat_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=5.0)

    log.info("worker_started", worker_id=ident, jobs=[j.name for j in jobs])
    await asyncio.gather(beat(), *(_loop(container, job, stop) for job in jobs))
    log.info("worker_stopped", worker_id=ident)


def default_jobs() -> list[Job]:
    """Every job a worker runs. Jobs register here as they are written."""
    from lipwa.worker import c2b as c2b_jobs
    from lipwa.worker import deliveries, recovery  # late: they import this module for Job
    from lipwa.worker import money as money_jobs
    from lipwa.worker import reconcile as reconcile_jobs

    return [
        deliveries.job(),
        *recovery.jobs(),
        reconcile_jobs.job(),
        *money_jobs.jobs(),
        c2b_jobs.job(),
    ]
