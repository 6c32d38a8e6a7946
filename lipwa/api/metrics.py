"""``GET /metrics`` (Prometheus text format) and the HTTP request metrics middleware.

Open when ``LIPWA_METRICS_TOKEN`` is unset, since the metrics hold no secrets, phone numbers or
ids (labels are closed sets; routes are templates such as ``/v1/payments/{payment_id}``).
When it is set, the scraper sends ``Authorization: Bearer <token>``. Each process serves its
own values: scrape every process (README.md, "Going live").
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lipwa import metrics
from lipwa.api.deps import ContainerDep
from lipwa.clock import utcnow
from lipwa.container import Container
from lipwa.services.readiness import heartbeat_age_s
from lipwa.store.tables import Payment

log = structlog.get_logger("lipwa.metrics")
router = APIRouter(include_in_schema=False)

# Several scrapers (HA Prometheus pairs) must not each run the backlog query.
DB_GAUGES_MAX_AGE_S = 10.0


def install(app: FastAPI) -> None:
    """Add ``/metrics`` and the request counters to the app."""
    app.add_middleware(HttpMetrics)
    app.include_router(router)


@router.get("/metrics")
async def scrape(request: Request, c: ContainerDep) -> Response:
    token = c.settings.metrics_token
    if token is not None:
        sent = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(sent, f"Bearer {token.get_secret_value()}".encode()):
            return Response(
                "metrics need 'Authorization: Bearer <LIPWA_METRICS_TOKEN>'\n",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": "Bearer"},
            )
    metrics.set_circuits(c.circuits.snapshot())
    state = request.app.state
    now = time.monotonic()
    if now - getattr(state, "metrics_db_read_at", -1e9) >= DB_GAUGES_MAX_AGE_S:
        try:
            await refresh_db_gauges(c)
            state.metrics_db_read_at = now
        except Exception:
            # The scrape still answers: a database outage is exactly when the API's error
            # and latency series must keep reaching Prometheus (the gauges keep their last
            # values and the failure is counted).
            log.warning("metrics_db_gauges_failed", exc_info=True)
            metrics.METRICS_DB_READ_ERRORS.inc()
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def refresh_db_gauges(c: Container) -> None:
    """Read the recovery backlog and the worker heartbeat: two short queries."""
    parked = Payment.next_check_at.is_(None)
    async with c.sessions() as session:
        rows = (
            await session.execute(
                select(
                    Payment.status,
                    parked,
                    func.count(),
                    func.min(Payment.created_at),
                )
                .where(Payment.status.in_(("pending", "unknown")))
                .group_by(Payment.status, parked)
            )
        ).all()
        beat_age = await heartbeat_age_s(session)
    wall = utcnow()
    by_status: dict[str, int] = {}
    for status, _, count, _ in rows:
        by_status[str(status)] = by_status.get(str(status), 0) + int(count)
    # Only payments still being checked: one parked for good must not pin the age alert.
    checked = [_aware(r[3]) for r in rows if not r[1] and r[3] is not None]
    oldest = min(checked, default=None)
    metrics.set_backlog(
        by_status,
        (wall - oldest).total_seconds() if oldest else None,
        sum(int(r[2]) for r in rows if r[1]),
    )
    metrics.WORKER_HEARTBEAT_AGE.set(beat_age if beat_age is not None else -1)


def _aware(value: datetime | str) -> datetime:
    """Aggregates bypass the column type on SQLite: parse and give the zone back."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class HttpMetrics:
    """Pure ASGI middleware: count and time every request by route template and status class."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = str(scope.get("method", "GET"))
            metrics.HTTP_REQUESTS.labels(method, route, f"{status // 100}xx").inc()
            metrics.HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)
