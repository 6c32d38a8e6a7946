"""Provider result callbacks of payouts and refunds, at per-account unguessable URLs.

Stored raw (``CallbackService.receive``) before anything else, then applied; the provider gets
its 200 even when applying fails (the worker's sweep applies it later).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from lipwa.api.deps import ContainerDep

router = APIRouter(prefix="/callbacks", include_in_schema=False)
log = structlog.get_logger("lipwa.callbacks")

DARAJA_ACK = {"ResultCode": 0, "ResultDesc": "Accepted"}


async def _receive(request: Request, c: ContainerDep, token: str, kind: str, ident: str) -> None:
    stored = await c.callbacks.receive(
        token=token,
        kind=kind,
        payment_id=ident,  # the payout / refund id of the URL
        method=request.method,
        headers=dict(request.headers),
        body=await request.body(),
        remote_addr=request.client.host if request.client else None,
    )
    try:
        await c.money.callbacks.process(stored.id, token)
    except Exception:
        log.exception("money_callback_apply_failed", callback_id=stored.id)


DARAJA_KINDS = ("b2c", "b2c-timeout", "status", "reversal", "reversal-timeout", "reversal-check")
MOMO_KINDS = ("momo-transfer", "momo-refund")


def _daraja(kind: str) -> Callable[..., Awaitable[Response]]:
    async def endpoint(token: str, ident: str, request: Request, c: ContainerDep) -> Response:
        await _receive(request, c, token, kind, ident)
        return JSONResponse(DARAJA_ACK)

    return endpoint


def _momo(kind: str) -> Callable[..., Awaitable[Response]]:
    async def endpoint(token: str, ident: str, request: Request, c: ContainerDep) -> Response:
        await _receive(request, c, token, kind, ident)
        return Response(status_code=200)

    return endpoint


for _kind in DARAJA_KINDS:
    router.add_api_route(f"/{{token}}/{_kind}/{{ident}}", _daraja(_kind), methods=["POST"])
for _kind in MOMO_KINDS:
    router.add_api_route(f"/{{token}}/{_kind}/{{ident}}", _momo(_kind), methods=["PUT", "POST"])
