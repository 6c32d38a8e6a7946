"""Merchant API: the balances of your provider accounts; and M-Pesa's Account Balance results in."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from lipwa import metrics
from lipwa.api.deps import CallerDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.services.balance_snapshots import RESULT, TIMEOUT, BalanceResults
from lipwa.services.balances import BalanceService
from lipwa.services.inbound import Inbound

router = APIRouter(prefix="/v1", tags=["balances"], responses=ERROR_RESPONSES)
callbacks_router = APIRouter(prefix="/callbacks", include_in_schema=False)

DARAJA_ACK = {"ResultCode": 0, "ResultDesc": "Accepted"}

EXAMPLE: dict[str, Any] = {
    "object": "list",
    "data": [
        {
            "object": "balance",
            "account_id": "acct_0lq3x8k2a9f1c2d3e4f5g6h7",
            "provider": "mpesa",
            "label": "Paybill",
            "status": "available",
            "balances": [
                {
                    "account": "Working Account",
                    "currency": "KES",
                    "available": "700000.00",
                    "amounts": ["700000.00", "700000.00", "0.00", "0.00"],
                },
                {
                    "account": "Utility Account",
                    "currency": "KES",
                    "available": "228037.00",
                    "amounts": ["228037.00", "228037.00", "0.00", "0.00"],
                },
            ],
            "as_of": "2026-01-31T08:00:02Z",
            "snapshot_id": "bal_0lq3x8k2a9f1c2d3e4f5g6h7",
            "cached": False,
            "error": None,
        },
        {
            "object": "balance",
            "account_id": "acct_0lq3x8k2b0000000000000001",
            "provider": "momo",
            "label": "MoMo Rwanda",
            "status": "available",
            "balances": [
                {"account": "collection", "currency": "RWF", "available": "150000"},
                {"account": "disbursement", "currency": "RWF", "available": "20000"},
            ],
            "as_of": "2026-01-31T08:00:01Z",
            "snapshot_id": "bal_0lq3x8k2b0000000000000002",
            "cached": True,
            "error": None,
        },
    ],
}


@router.get(
    "/balances",
    summary="Balances of your provider accounts (of this key's mode)",
    description="One entry per active account. MoMo is asked directly; M-Pesa answers "
    "asynchronously, so Lipwa waits up to ~5 s for its result and otherwise answers "
    '`"status": "pending"` with the last balances it knows (`as_of`). An answer younger than '
    "60 s is served from cache (`cached: true`) unless `refresh=true`. M-Pesa needs the "
    "account's initiator name, password and certificate. `available` is the first amount of "
    "each M-Pesa account line; `amounts` keeps all four as Daraja sends them.",
    responses={200: {"content": {"application/json": {"example": EXAMPLE}}}},
)
async def balances(
    c: ContainerDep,
    caller: CallerDep,
    refresh: Annotated[
        bool, Query(description="Ask the providers now, even if a recent answer exists.")
    ] = False,
) -> dict[str, Any]:
    service = BalanceService(c.sessions, c.registry, c.settings.public_url)
    return await service.balances(caller, refresh)


async def _receive(request: Request, c: ContainerDep, token: str, kind: str, ident: str) -> None:
    inbound = Inbound(
        token=token,
        kind=kind,
        ident=ident,
        method=request.method,
        headers=dict(request.headers),
        body=await request.body(),
        remote_addr=request.client.host if request.client else None,
    )
    with metrics.callback_timer(kind):
        await BalanceResults(c.sessions).receive(inbound)


@callbacks_router.post("/{token}/balance/{snapshot_id}")
async def balance_result(
    token: str, snapshot_id: str, request: Request, c: ContainerDep
) -> Response:
    await _receive(request, c, token, RESULT, snapshot_id)
    return JSONResponse(DARAJA_ACK)


@callbacks_router.post("/{token}/balance-timeout/{snapshot_id}")
async def balance_timeout(
    token: str, snapshot_id: str, request: Request, c: ContainerDep
) -> Response:
    await _receive(request, c, token, TIMEOUT, snapshot_id)
    return JSONResponse(DARAJA_ACK)
