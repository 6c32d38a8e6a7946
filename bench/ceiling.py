"""The ceiling: the gateway's stack doing one INSERT per request and nothing else.

Same server (uvicorn), framework (FastAPI, a pydantic body), engine (``make_engine``) and
route (``POST /v1/payments``) as the gateway, so the load generator sends the very same
requests; what the gateway does beyond this (auth, idempotency, reads, provider call, events)
is its own cost. Serve with ``BENCH_DATABASE_URL=… python -m uvicorn --factory
bench.ceiling:create_app``; call :func:`prepare` first to create the scratch table.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Column, DateTime, MetaData, String, Table, insert

from lipwa.store.db import make_engine

metadata = MetaData()
scratch = Table(
    "bench_ceiling",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("idempotency_key", String(255), nullable=False),
    Column("reference", String(100), nullable=False),
    Column("phone", String(20), nullable=False),
    Column("amount", String(20), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


class PaymentIn(BaseModel):
    amount: str
    currency: str
    phone: str
    reference: str


def prepare(url: str) -> None:
    """(Re)create the scratch table (blocking; not inside an event loop)."""

    async def create() -> None:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.drop_all)
                await conn.run_sync(metadata.create_all)
        finally:
            await engine.dispose()

    asyncio.run(create())


def create_app() -> FastAPI:
    url = os.environ["BENCH_DATABASE_URL"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = make_engine(url)
        try:
            yield
        finally:
            await app.state.engine.dispose()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.post("/v1/payments", status_code=201)
    async def create_payment(
        body: PaymentIn,
        request: Request,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        row: dict[str, Any] = {
            "id": f"pay_{uuid.uuid4().hex}",
            "idempotency_key": idempotency_key or "",
            "reference": body.reference,
            "phone": body.phone,
            "amount": body.amount,
            "currency": body.currency,
            "created_at": datetime.now(UTC),
        }
        async with request.app.state.engine.begin() as conn:
            await conn.execute(insert(scratch).values(**row))
        row["created_at"] = row["created_at"].isoformat()
        return JSONResponse(row, status_code=201)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
