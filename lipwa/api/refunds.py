"""Merchant API: refunds of succeeded payments (M-Pesa reversal, MoMo refund)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from lipwa.api.deps import CallerDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.api.payouts import IdempotencyKey, require_idempotency_key
from lipwa.services.money_states import OPEN_STATUSES
from lipwa.services.money_views import get_refund, list_refunds, refund_view
from lipwa.services.payments import get_payment
from lipwa.services.refunds import RefundIn

router = APIRouter(prefix="/v1", tags=["refunds"], responses=ERROR_RESPONSES)


@router.post(
    "/payments/{payment_id}/refunds",
    status_code=201,
    summary="Refund a succeeded payment (whole for M-Pesa, whole or part for MoMo)",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "examples": {
                        "whole": {
                            "summary": "Refund what is left of the payment",
                            "value": {"reason": "Order cancelled"},
                        },
                        "partial": {
                            "summary": "Refund part of a MoMo payment",
                            "value": {"amount": "500", "reason": "One item out of stock"},
                        },
                    }
                }
            }
        }
    },
)
async def create_refund(
    payment_id: str,
    body: RefundIn,
    c: ContainerDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    key = require_idempotency_key(idempotency_key)
    outcome = await c.money.refunds.create(caller, payment_id, body, key)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return JSONResponse(outcome.body, status_code=outcome.status, headers=headers)


@router.get("/payments/{payment_id}/refunds", summary="List a payment's refunds, newest first")
async def read_payment_refunds(
    payment_id: str, c: ContainerDep, caller: CallerDep
) -> dict[str, Any]:
    async with c.sessions() as session:
        await get_payment(session, caller, payment_id)  # 404 for another merchant's payment
        return await list_refunds(session, caller, payment_id)


@router.post(
    "/refunds/{refund_id}/refresh",
    summary="Ask the provider about this refund now and return it",
    description="For a pending or unknown refund (also one whose automatic checks ended after "
    "24 h) Lipwa asks the provider once more: MoMo answers at once. An M-Pesa refund is "
    "checked by repeating its reversal, which Daraja performs at most once per transaction; "
    "the answer comes by callback within seconds, so read the refund again. A final refund is "
    "returned as it is.",
)
async def refresh_refund(refund_id: str, c: ContainerDep, caller: CallerDep) -> dict[str, Any]:
    async with c.sessions() as session:
        refund = await get_refund(session, caller, refund_id)
    if refund.status in OPEN_STATUSES:
        await c.money.recovery.check_refund(refund.id, asked=True)
        async with c.sessions() as session:
            refund = await get_refund(session, caller, refund_id)
    return refund_view(refund)


@router.get("/refunds/{refund_id}", summary="Read a refund")
async def read_refund(refund_id: str, c: ContainerDep, caller: CallerDep) -> dict[str, Any]:
    async with c.sessions() as session:
        return refund_view(await get_refund(session, caller, refund_id))
