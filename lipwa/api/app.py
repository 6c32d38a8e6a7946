"""The gateway's ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from lipwa import __version__
from lipwa.api import admin, callbacks, errors, events, health, payments, webhooks
from lipwa.config import Settings
from lipwa.container import Container

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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = container is None
        app.state.container = container or Container.build(settings)
        try:
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
    app.include_router(events.router)
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(callbacks.router)
    app.include_router(health.router)
    return app
