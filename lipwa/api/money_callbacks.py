"""Provider result callbacks of payouts and refunds, at per-account unguessable URLs.

Stored raw (``CallbackService.receive``) before anything else, then applied; the provider gets
its 200 even when applying fails (the worker's sweep applies it later). Daraja's are applied
before the answer; MoMo's after it, because applying them means asking MTN first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask

from lipwa.api.deps import ContainerDep
from lipwa.container import Container
from lipwa.store.tables import InboundCallback

router = APIRouter(prefix="/callbacks", include_in_schema=False)
log = structlog.get_logger("lipwa.callbacks")

DARAJA_ACK = {"ResultCode": 0, "ResultDesc": "Accepted"}


async def _store(
    request: Request, c: ContainerDep, token: str, kind: str, ident: str
) -> InboundCallback:
    return await c.callbacks.receive(
        token=token,
        kind=kind,
        payment_id=ident,  # the payout / refund id of the URL
        method=request.method,
        headers=dict(request.headers),
        body=await request.body(),
        remote_addr=request.client.host if request.client else None,
    )


async def _apply(c: Container, token: str, callback_id: int) -> None:
    try:
        await c.money.callbacks.process(callback_id, token)
    except Exception:
        log.exception("money_callback_apply_failed", callback_id=callback_id)


DARAJA_KINDS = ("b2c", "b2c-timeout", "status", "reversal", "reversal-timeout", "reversal-check")
MOMO_KINDS = ("momo-transfer", "momo-refund")


def _daraja(kind: str) -> Callable[..., Awaitable[Response]]:
    async def endpoint(token: str, ident: str, request: Request, c: ContainerDep) -> Response:
        stored = await _store(request, c, token, kind, ident)
        await _apply(c, token, stored.id)
        return JSONResponse(DARAJA_ACK)

    return endpoint


def _momo(kind: str) -> Callable[..., Awaitable[Response]]:
    async def endpoint(token: str, ident: str, request: Request, c: ContainerDep) -> Response:
        stored = await _store(request, c, token, kind, ident)
        return Response(status_code=200, background=BackgroundTask(_apply, c, token, stored.id))

    return endpoint


for _kind in DARAJA_KINDS:
    router.add_api_route(f"/{{token}}/{_kind}/{{ident}}", _daraja(_kind), methods=["POST"])
for _kind in MOMO_KINDS:
    router.add_api_route(f"/{{token}}/{_kind}/{{ident}}", _momo(_kind), methods=["PUT", "POST"])
