"""Worker jobs for money out and back: status checks of due payouts and refunds, and the sweep
of their result callbacks that were stored but never applied.

Claims work like the payment checks (``lipwa.worker.recovery``): one transaction pushes the
due rows' ``next_check_at`` forward by a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so
any number of workers share the work and a worker that dies loses nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from lipwa.container import Container
from lipwa.services.money_states import MoneyModel
from lipwa.store.tables import Payout, Refund
from lipwa.worker.runner import Job

log = structlog.get_logger("lipwa.worker.money")


async def _check_due(
    container: Container, model: MoneyModel, check: Callable[[str], Awaitable[str]]
) -> int:
    settings = container.settings
    ids = await container.money.recovery.claim_due(
        model,
        settings.recovery_batch,
        settings.check_lease_s,
        skip_locked=container.engine.dialect.name == "postgresql",
    )
    if not ids:
        return 0
    bound = asyncio.Semaphore(max(1, settings.recovery_concurrency))

    async def one(row_id: str) -> None:
        async with bound:
            try:
                action = await check(row_id)
                log.info("money_check", id=row_id, action=action)
            except Exception:  # one row's trouble must not stop the batch
                log.exception("money_check_failed", id=row_id)

    await asyncio.gather(*(one(i) for i in ids))
    return len(ids)


async def check_due_payouts(container: Container) -> int:
    return await _check_due(container, Payout, container.money.recovery.check_payout)


async def check_due_refunds(container: Container) -> int:
    return await _check_due(container, Refund, container.money.recovery.check_refund)


async def sweep_money_callbacks(container: Container, older_than_s: float = 5.0) -> int:
    callbacks = container.money.callbacks
    handled = 0
    for callback_id in await callbacks.unprocessed(older_than_s):
        token = await callbacks.token_for(callback_id)
        if token is None:
            await container.callbacks.mark_unprocessable(
                callback_id, "no payout/refund with an account matching this callback URL"
            )
        else:
            try:
                await callbacks.process(callback_id, token)
            except Exception:  # stays unprocessed: the next sweep tries again
                log.exception("money_callback_sweep_failed", callback_id=callback_id)
                continue
        handled += 1
    return handled


def jobs() -> list[Job]:
    return [
        Job(name="payout_checks", run_once=check_due_payouts, idle_s=1.0),
        Job(name="refund_checks", run_once=check_due_refunds, idle_s=1.0),
        Job(name="money_callback_sweep", run_once=sweep_money_callbacks, idle_s=5.0),
    ]
