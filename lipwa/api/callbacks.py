"""Provider callbacks in, at per-account unguessable URLs. Stored raw before answering."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from lipwa import metrics
from lipwa.api.deps import ContainerDep

router = APIRouter(prefix="/callbacks", include_in_schema=False)
log = structlog.get_logger("lipwa.callbacks")


async def _receive(
    request: Request, c: ContainerDep, token: str, kind: str, payment_id: str
) -> None:
    with metrics.callback_timer(kind):
        await _receive_and_apply(request, c, token, kind, payment_id)


async def _receive_and_apply(
    request: Request, c: ContainerDep, token: str, kind: str, payment_id: str
) -> None:
    body = await request.body()
    stored = await c.callbacks.receive(
        token=token,
        kind=kind,
        payment_id=payment_id,
        method=request.method,
        headers=dict(request.headers),
        body=body,
        remote_addr=request.client.host if request.client else None,
    )
    try:
        await c.callbacks.process(stored.id, token, stored)
    except Exception:
        # Stored already: the worker applies it later. The provider still gets its 200.
        log.exception("callback_apply_failed", callback_id=stored.id)


@router.post("/{token}/stk/{payment_id}")
async def daraja_stk(token: str, payment_id: str, request: Request, c: ContainerDep) -> Response:
    await _receive(request, c, token, "stk", payment_id)
    return JSONResponse({"ResultCode": 0, "ResultDesc": "Accepted"})


@router.api_route("/{token}/momo/{payment_id}", methods=["PUT", "POST"])
async def momo(token: str, payment_id: str, request: Request, c: ContainerDep) -> Response:
    await _receive(request, c, token, "momo", payment_id)
    return Response(status_code=200)
