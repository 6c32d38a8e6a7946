"""``lipwa worker`` and ``lipwa recover``: the worker process, and checking open payments now."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select

from lipwa.config import Settings
from lipwa.container import Container
from lipwa.services.recovery import CheckResult
from lipwa.services.transitions import OPEN_STATUSES
from lipwa.store.tables import Payment


def run_worker_process(settings: Settings) -> None:
    """Run every worker job until SIGTERM or SIGINT, then finish the current round and stop.
    Serves this process's metrics on ``LIPWA_WORKER_METRICS_PORT`` when set."""
    from prometheus_client import start_http_server

    from lipwa.worker.embedded import selected_jobs
    from lipwa.worker.runner import run_worker

    if settings.worker_metrics_port is not None:
        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        container = Container.build(settings)
        try:
            await run_worker(container, selected_jobs(settings.worker_jobs), stop)
        finally:
            await container.close()

    asyncio.run(main())


async def open_payment_ids(
    container: Container, since: datetime | None, merchant_id: str | None
) -> list[str]:
    query = select(Payment.id).where(Payment.status.in_(OPEN_STATUSES), Payment.channel == "prompt")
    if since is not None:
        query = query.where(Payment.created_at >= since)
    if merchant_id:
        query = query.where(Payment.merchant_id == merchant_id)
    async with container.sessions() as session:
        return list(await session.scalars(query.order_by(Payment.created_at)))


async def _recover(
    settings: Settings,
    console: Console,
    since: datetime | None,
    merchant_id: str | None,
    concurrency: int,
) -> list[CheckResult]:
    container = Container.build(settings)
    try:
        ids = await open_payment_ids(container, since, merchant_id)
        bound = asyncio.Semaphore(max(1, concurrency))
        progress = Progress(
            TextColumn("[bold]Checking open payments"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            task = progress.add_task("check", total=len(ids))

            async def one(payment_id: str) -> CheckResult:
                async with bound:
                    try:
                        return await container.recovery.check(payment_id, "recover")
                    except Exception as exc:
                        return CheckResult(payment_id, "error", "?", type(exc).__name__)
                    finally:
                        progress.advance(task)

            return list(await asyncio.gather(*(one(pid) for pid in ids)))
    finally:
        await container.close()


def recover(
    settings: Settings,
    console: Console,
    since: datetime | None,
    merchant_id: str | None,
    concurrency: int = 10,
) -> list[CheckResult]:
    """Check every open payment now; print a progress bar and a summary table."""
    results = asyncio.run(_recover(settings, console, since, merchant_id, concurrency))
    console.print(f"Checked {len(results)} open payment(s).")
    table = Table()
    table.add_column("Status now")
    table.add_column("Payments", justify="right")
    for status, count in sorted(Counter(r.status for r in results).items()):
        table.add_row(status, str(count))
    console.print(table)
    actions = Table()
    actions.add_column("What the check did")
    actions.add_column("Payments", justify="right")
    for action, count in sorted(Counter(r.action for r in results).items()):
        actions.add_row(action, str(count))
    console.print(actions)
    failed = [r for r in results if r.action == "error"]
    if failed:
        shown = ", ".join(f"{r.payment_id} ({r.detail})" for r in failed[:10])
        console.print(f"[red]{len(failed)} check(s) failed:[/red] {shown}", soft_wrap=True)
    return results
