"""The ceiling: the gateway's stack doing one INSERT per request and nothing else.

Same server (uvicorn), framework (FastAPI, a pydantic body), engine (``make_engine``) and
route (``POST /v1/payments``) as the gateway, so the load generator sends the very same
requests; what the gateway does beyond this (auth, idempotency, reads, provider call, events)
is its own cost. Serve with ``BENCH_DATABASE_URL=… python -m uvicorn --factory
bench.ceiling:create_app``; call :func:`prepare` first to create the scratch table.

With ``BENCH_SIMULATOR`` (JSON: the simulator's ``url`` and its ``mpesa`` credentials) and
``BENCH_PUBLIC_URL`` it is the **provider ceiling**: the INSERT, then the one STK push that no
initiation can do without (httpx over aiohttp's pool, the cheaper of the two measured, so the
floor is not overstated; a valid Password, a token fetched once), and the callback that push
brings taken by one UPDATE. What a payment must cost on this stack whatever the gateway
around it does: no checks, no events, no second read.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Column, DateTime, MetaData, String, Table, func, insert, select, update

from lipwa.providers.mpesa.wire import stk_password, timestamp
from lipwa.providers.transport import AiohttpTransport
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
    Column("provider_ref", String(100)),
    Column("result", String(300)),
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


def counts(url: str) -> dict[str, int]:
    """Rows written, and how many of them their callback reached (blocking)."""

    async def count() -> dict[str, int]:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                total, answered = (
                    await conn.execute(select(func.count(), func.count(scratch.c.result)))
                ).one()
            return {"written": int(total), "called back": int(answered)}
        finally:
            await engine.dispose()

    return asyncio.run(count())


def create_app() -> FastAPI:
    url = os.environ["BENCH_DATABASE_URL"]

    simulator = json.loads(os.environ.get("BENCH_SIMULATOR") or "null")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = make_engine(url)
        app.state.push = None
        try:
            if simulator is not None:
                async with StkPusher(simulator, os.environ["BENCH_PUBLIC_URL"]) as push:
                    app.state.push = push
                    yield
            else:
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
        push: StkPusher | None = request.app.state.push
        if push is not None:
            row["provider_ref"] = await push.send(row["id"], body)
        return JSONResponse(row, status_code=201)

    @app.post("/callbacks/{payment_id}")
    async def callback(payment_id: str, request: Request) -> JSONResponse:
        result = (await request.json())["Body"]["stkCallback"]["ResultDesc"]
        async with request.app.state.engine.begin() as conn:
            await conn.execute(
                update(scratch).where(scratch.c.id == payment_id).values(result=result[:300])
            )
        return JSONResponse({"ResultCode": 0, "ResultDesc": "Accepted"})

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


class StkPusher:
    """One Daraja STK push per payment to the simulator: a token fetched once, a valid
    Password per request, the callback sent back to this app."""

    def __init__(self, simulator: dict[str, Any], public_url: str) -> None:
        mpesa = simulator["mpesa"]
        self._auth = (mpesa["consumer_key"], mpesa["consumer_secret"])
        self._shortcode = mpesa["paybill"]["shortcode"]
        self._passkey = mpesa["paybill"]["passkey"]
        self._public_url = public_url
        # The cheaper transport (lipwa.providers.transport), so the floor is not overstated;
        # the gateway itself still uses httpx's own pool.
        self._http = httpx.AsyncClient(
            base_url=simulator["url"],
            timeout=30,
            transport=AiohttpTransport(limits=httpx.Limits(max_connections=200)),
        )
        self._headers: dict[str, str] = {}

    async def __aenter__(self) -> StkPusher:
        answer = await self._http.get(
            "/oauth/v1/generate", params={"grant_type": "client_credentials"}, auth=self._auth
        )
        token = answer.raise_for_status().json()["access_token"]
        self._headers = {"Authorization": f"Bearer {token}"}
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def send(self, payment_id: str, body: PaymentIn) -> str:
        stamp = timestamp(datetime.now(UTC))
        phone = "254" + body.phone.removeprefix("0")
        answer = await self._http.post(
            "/mpesa/stkpush/v1/processrequest",
            headers=self._headers,
            json={
                "BusinessShortCode": self._shortcode,
                "Password": stk_password(self._shortcode, self._passkey, stamp),
                "Timestamp": stamp,
                "TransactionType": "CustomerPayBillOnline",
                "Amount": int(body.amount),
                "PartyA": phone,
                "PartyB": self._shortcode,
                "PhoneNumber": phone,
                "CallBackURL": f"{self._public_url}/callbacks/{payment_id}",
                "AccountReference": body.reference[:12],
                "TransactionDesc": "ceiling",
            },
        )
        return str(answer.raise_for_status().json()["CheckoutRequestID"])
