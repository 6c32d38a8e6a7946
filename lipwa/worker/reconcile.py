"""Worker job: the daily reconciliation of the accounts that opted in (see
``lipwa.reconcile.scheduled``). It looks every few minutes; the work is once per day."""

from __future__ import annotations

from pathlib import Path

from lipwa.container import Container
from lipwa.reconcile.scheduled import reconcile_due
from lipwa.worker.runner import Job


async def reconcile_daily(container: Container) -> int:
    folder = container.settings.statements_dir
    return await reconcile_due(container.sessions, container.http, Path(folder) if folder else None)


def job() -> Job:
    return Job(name="reconcile_daily", run_once=reconcile_daily, idle_s=300.0)
