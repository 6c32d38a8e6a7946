"""The gateway's ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from lipwa import __version__
from lipwa.api import admin, callbacks, errors, events, health, payments, recovery, webhooks
from lipwa.api import anomalies as anomalies_api
from lipwa.api import audit as audit_api
from lipwa.api import balances as balances_api
from lipwa.api import c2b as c2b_api
from lipwa.api import flags as flags_api
from lipwa.api import metrics as metrics_api
from lipwa.api import money_callbacks as money_callbacks_api
from lipwa.api import payouts as payouts_api
from lipwa.api import phones as phones_api
from lipwa.api import reconciliations as reconciliations_api
from lipwa.api import refunds as refunds_api
from lipwa.api import reports as reports_api
from lipwa.api.callback_sources import ALLOWED_SOURCE
from lipwa.config import Settings
from lipwa.container import Container
from lipwa.observability import configure_logging
from lipwa.web import install as install_pages
from lipwa.worker.embedded import embedded_worker

DESCRIPTION = """
One API in front of M-Pesa (Daraja) and MTN MoMo.

* Authenticate with `Authorization: Bearer lw_test_…` (sandbox accounts) or `lw_live_…`
  (production accounts).
* Every POST takes an `Idempotency-Key`; the same key with the same body replays the answer.
* Amounts are decimal strings in the currency's major unit; times are ISO-8601 UTC.
* Errors are one object: `{"error": {"type", "code", "message", "param"}}`.
"""


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    settings = settings or (container.settings if container else Settings())
    if not structlog.is_configured():
        # `lipwa serve --workers N` builds the app in N new processes: each logs (masked, as
        # configured) like the one that started them.
        configure_logging(settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = container is None
        app.state.container = container or Container.build(settings)
        try:
            await app.state.container.check_startup()  # LIPWA_MODE vs keys and accounts
            # The worker runs here unless role/run_worker say it runs elsewhere.
            async with embedded_worker(app.state.container, settings.embeds_worker):
                yield
        finally:
            if own:
                await app.state.container.close()

    app = FastAPI(
        title="Lipwa",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
    )
    errors.install(app)
    app.include_router(payments.router)
    app.include_router(payouts_api.router)
    app.include_router(payouts_api.admin_router)
    app.include_router(refunds_api.router)
    app.include_router(recovery.router)
    app.include_router(recovery.admin_router)
    app.include_router(events.router)
    app.include_router(webhooks.router)
    app.include_router(phones_api.router)
    app.include_router(admin.router)
    app.include_router(flags_api.router)
    app.include_router(audit_api.router)
    app.include_router(anomalies_api.router)
    app.include_router(reconciliations_api.router)
    app.include_router(reports_api.router)
    app.include_router(reports_api.admin_router)
    app.include_router(callbacks.router, dependencies=[ALLOWED_SOURCE])
    app.include_router(money_callbacks_api.router, dependencies=[ALLOWED_SOURCE])
    app.include_router(balances_api.router)  # GET /v1/balances
    # M-Pesa balance results
    app.include_router(balances_api.callbacks_router, dependencies=[ALLOWED_SOURCE])
    # C2B validation / confirmation
    app.include_router(c2b_api.callbacks_router, dependencies=[ALLOWED_SOURCE])
    app.include_router(c2b_api.admin_router)  # register-c2b, c2b-rules
    app.include_router(health.router)
    install_pages(app, settings)  # checkout, onboarding and dashboard pages (lipwa.web)
    metrics_api.install(app)  # GET /metrics and request counters
    return app
