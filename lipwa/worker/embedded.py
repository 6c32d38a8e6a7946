"""The worker inside the API process (``lipwa serve`` with role "all": the embedded default)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import structlog

from lipwa.container import Container
from lipwa.worker.runner import Job, default_jobs, run_worker

log = structlog.get_logger("lipwa.worker")

STOP_GRACE_S = 10.0


def selected_jobs(names: str | None, jobs: Sequence[Job] | None = None) -> list[Job]:
    """The jobs named in ``names`` (comma-separated, as LIPWA_WORKER_JOBS); all when None."""
    available = list(jobs if jobs is not None else default_jobs())
    if names is None:
        return available
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    unknown = wanted - {j.name for j in available}
    if unknown:
        known = ", ".join(j.name for j in available)
        raise ValueError(f"unknown worker job(s) {', '.join(sorted(unknown))}; known: {known}")
    return [j for j in available if j.name in wanted]


@contextlib.asynccontextmanager
async def embedded_worker(container: Container, enabled: bool = True) -> AsyncIterator[None]:
    """Run the worker jobs in the background while the block runs; stop them after."""
    if not enabled:
        yield
        return
    jobs = selected_jobs(container.settings.worker_jobs)
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(container, jobs, stop), name="lipwa-worker")
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=STOP_GRACE_S)
        except (TimeoutError, asyncio.CancelledError):
            log.warning("embedded_worker_cancelled")
        except Exception:
            log.exception("embedded_worker_failed")
