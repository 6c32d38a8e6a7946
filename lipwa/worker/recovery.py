"""Worker jobs: status checks of due payments, and the sweep of unapplied callbacks.

A check is claimed, not queued: one transaction selects due rows (``status`` pending or
unknown, ``next_check_at <= now``), pushes their ``next_check_at`` forward by a lease and
counts the attempt. On PostgreSQL the select is ``FOR UPDATE SKIP LOCKED`` so workers never
wait for each other; on SQLite the single writer lock (BEGIN IMMEDIATE) serialises claims. A
worker that dies mid-check loses nothing: the lease runs out and another worker claims it.
The check itself (``RecoveryService.check``) sets the real next time.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog
from sqlalchemy import select, update

from lipwa.clock import utcnow
from lipwa.container import Container
from lipwa.services.transitions import OPEN_STATUSES
from lipwa.store.tables import Payment
from lipwa.worker.runner import Job

log = structlog.get_logger("lipwa.worker.recovery")


async def claim_due(container: Container, limit: int) -> list[str]:
    """Claim up to ``limit`` due payments for this worker; returns their ids."""
    now = utcnow()
    lease = now + timedelta(seconds=container.settings.check_lease_s)
    query = (
        select(Payment.id)
        .where(
            Payment.status.in_(OPEN_STATUSES),
            Payment.channel == "prompt",
            Payment.next_check_at <= now,
        )
        .order_by(Payment.next_check_at)
        .limit(limit)
    )
    if container.engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    async with container.sessions() as session, session.begin():
        ids = list(await session.scalars(query))
        if ids:
            await session.execute(
                update(Payment)
                .where(Payment.id.in_(ids))
                .values(next_check_at=lease, check_attempts=Payment.check_attempts + 1)
                .execution_options(synchronize_session=False)
            )
    return ids


async def check_due_payments(container: Container) -> int:
    settings = container.settings
    ids = await claim_due(container, settings.recovery_batch)
    if not ids:
        return 0
    bound = asyncio.Semaphore(max(1, settings.recovery_concurrency))

    async def one(payment_id: str) -> None:
        async with bound:
            try:
                await container.recovery.check(payment_id, "worker")
            except Exception:  # one payment's trouble must not stop the batch
                log.exception("recovery_check_failed", payment_id=payment_id)

    await asyncio.gather(*(one(pid) for pid in ids))
    return len(ids)


async def sweep_callbacks(container: Container) -> int:
    return await container.recovery.sweep_callbacks()


def jobs() -> list[Job]:
    return [
        Job(name="payment_checks", run_once=check_due_payments, idle_s=1.0),
        Job(name="callback_sweep", run_once=sweep_callbacks, idle_s=5.0),
    ]
