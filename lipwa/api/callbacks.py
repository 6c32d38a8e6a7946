"""Provider callbacks in, at per-account unguessable URLs. Stored raw before answering.

A callback is answered as soon as it is stored: applying it means asking the provider first
(``CallbackService``), which must not keep the provider's request waiting; if the process dies
in between, the sweep applies it.
"""

from __future__ import annotations

import time

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask

from lipwa import metrics
from lipwa.api.deps import ContainerDep
from lipwa.container import Container
from lipwa.store.tables import InboundCallback

router = APIRouter(prefix="/callbacks", include_in_schema=False)
log = structlog.get_logger("lipwa.callbacks")


async def _store(
    request: Request, c: ContainerDep, token: str, kind: str, payment_id: str
) -> InboundCallback:
    return await c.callbacks.receive(
        token=token,
        kind=kind,
        payment_id=payment_id,
        method=request.method,
        headers=dict(request.headers),
        body=await request.body(),
        remote_addr=request.client.host if request.client else None,
    )


async def _apply(c: Container, token: str, stored: InboundCallback, started: float) -> None:
    with metrics.callback_timer(stored.kind, started):
        try:
            await c.callbacks.process(stored.id, token, stored)
        except Exception:
            # Stored already: the worker applies it later. The provider still gets its 200.
            log.exception("callback_apply_failed", callback_id=stored.id)


@router.post("/{token}/stk/{payment_id}")
async def daraja_stk(token: str, payment_id: str, request: Request, c: ContainerDep) -> Response:
    started = time.perf_counter()
    stored = await _store(request, c, token, "stk", payment_id)
    return JSONResponse(
        {"ResultCode": 0, "ResultDesc": "Accepted"},
        background=BackgroundTask(_apply, c, token, stored, started),
    )


@router.api_route("/{token}/momo/{payment_id}", methods=["PUT", "POST"])
async def momo(token: str, payment_id: str, request: Request, c: ContainerDep) -> Response:
    started = time.perf_counter()
    stored = await _store(request, c, token, "momo", payment_id)
    return Response(status_code=200, background=BackgroundTask(_apply, c, token, stored, started))
