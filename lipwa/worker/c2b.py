"""Worker job: apply C2B confirmations and M-Pesa balance results that were stored but never
applied (the process stopped in between), and close C2B validation rows left undecided."""

from __future__ import annotations

from lipwa.container import Container
from lipwa.services.balance_snapshots import BalanceResults
from lipwa.services.c2b_inbound import C2bInbound
from lipwa.worker.runner import Job


async def sweep_c2b_callbacks(container: Container, older_than_s: float = 5.0) -> int:
    confirmed = await C2bInbound(container.sessions).sweep(older_than_s)
    results = await BalanceResults(container.sessions).sweep(older_than_s)
    return confirmed + results


def job() -> Job:
    return Job(name="c2b_callback_sweep", run_once=sweep_c2b_callbacks, idle_s=5.0)
