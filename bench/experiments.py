"""Proposed fixes, applied from outside for measurement only (the real fix belongs in lipwa).

Select one with ``--sim-factory bench.experiments:<name>``; the benchmarks never use these
unless asked, so the default numbers are always those of the code as it is.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.applications import Starlette

from lipwa.simulator.app import create_app_from_env

CALLBACKS_IN_FLIGHT = 32


def simulator_bounded_callbacks() -> Starlette:
    """The simulator with at most 32 callback deliveries in flight, on a 32-connection pool.

    Unbounded, every due callback enters httpcore's pool queue at once; the pool then spends
    O(queued x connections) on each request it finishes, and falls ever further behind.
    Waiting on a semaphore instead keeps that queue empty. Proposed for ``Simulator._deliver``.
    """
    app = create_app_from_env()
    sim = app.state.sim
    gate = asyncio.Semaphore(CALLBACKS_IN_FLIGHT)
    limits = httpx.Limits(
        max_connections=CALLBACKS_IN_FLIGHT, max_keepalive_connections=CALLBACKS_IN_FLIGHT
    )
    sim._client = httpx.AsyncClient(
        timeout=httpx.Timeout(10.0), follow_redirects=False, limits=limits
    )
    deliver = sim._deliver

    async def bounded(record: Any, headers: dict[str, str]) -> None:
        async with gate:
            await deliver(record, headers)

    sim._deliver = bounded
    return app
