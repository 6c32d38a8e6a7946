"""Merchant API: payouts (money out to a phone), and the admin's approval of payouts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from lipwa.api.deps import AdminDep, CallerDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.errors import invalid
from lipwa.services.money_states import OPEN_STATUSES
from lipwa.services.money_views import get_payout, list_payouts, payout_view
from lipwa.services.payouts import PayoutIn

router = APIRouter(prefix="/v1", tags=["payouts"], responses=ERROR_RESPONSES)
admin_router = APIRouter(prefix="/admin/v1", tags=["admin"], responses=ERROR_RESPONSES)

IDEMPOTENCY_KEY_MAX = 200  # stored with a mode prefix in a 255-character column
STATUSES = "^(awaiting_approval|pending|unknown|succeeded|failed|cancelled)$"
NO_BODY_EXAMPLE = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {"examples": {"empty": {"summary": "No body", "value": {}}}}
        },
    }
}


def require_idempotency_key(value: str | None) -> str:
    if not value:
        raise invalid(
            "idempotency_key_required",
            "Send an Idempotency-Key header (e.g. a UUID) so a retry never pays twice",
            "Idempotency-Key",
        )
    if len(value) > IDEMPOTENCY_KEY_MAX:
        raise invalid(
            "idempotency_key_too_long",
            f"Idempotency-Key is at most {IDEMPOTENCY_KEY_MAX} characters",
            "Idempotency-Key",
        )
    return value


IdempotencyKey = Annotated[
    str | None,
    Header(description="Required. The same key with the same body replays the response."),
]


@router.post(
    "/payouts",
    status_code=201,
    summary="Pay money out to a phone (M-Pesa B2C or MoMo disbursement transfer)",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "examples": {
                        "mpesa": {
                            "summary": "M-Pesa B2C, Kenya (KES 10..250,000, whole shillings)",
                            "value": {
                                "amount": "500",
                                "currency": "KES",
                                "phone": "0708374149",
                                "reason": "Cashback",
                                "reference": "cb-2024-001",
                                "metadata": {"customer": "42"},
                            },
                        },
                        "momo": {
                            "summary": "MTN MoMo disbursement, Rwanda",
                            "value": {
                                "amount": "5000",
                                "currency": "RWF",
                                "phone": "+250788123456",
                                "reason": "Salary",
                                "reference": "salary-7",
                            },
                        },
                    }
                }
            }
        }
    },
)
async def create_payout(
    body: PayoutIn, c: ContainerDep, caller: CallerDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    key = require_idempotency_key(idempotency_key)
    outcome = await c.money.payouts.create(caller, body, key)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return JSONResponse(outcome.body, status_code=outcome.status, headers=headers)


@router.get("/payouts/{payout_id}", summary="Read a payout")
async def read_payout(payout_id: str, c: ContainerDep, caller: CallerDep) -> dict[str, Any]:
    async with c.sessions() as session:
        return payout_view(await get_payout(session, caller, payout_id))


@router.post(
    "/payouts/{payout_id}/refresh",
    summary="Ask the provider about this payout now and return it",
    description="For a pending or unknown payout (also one whose automatic checks ended "
    "after 24 h) Lipwa asks the provider once more: MoMo answers at once; M-Pesa's Transaction "
    "Status answers by callback within seconds, so read the payout again. A final payout is "
    "returned as it is. Safe to repeat: a payout Daraja or MTN says it never got is sent again "
    "only under its own id, which the provider takes at most once.",
)
async def refresh_payout(payout_id: str, c: ContainerDep, caller: CallerDep) -> dict[str, Any]:
    async with c.sessions() as session:
        payout = await get_payout(session, caller, payout_id)
    if payout.status in OPEN_STATUSES:
        await c.money.recovery.check_payout(payout.id, asked=True)
        async with c.sessions() as session:
            payout = await get_payout(session, caller, payout_id)
    return payout_view(payout)


@router.get("/payouts", summary="List payouts, newest first (cursor pagination)")
async def read_payouts(
    c: ContainerDep,
    caller: CallerDep,
    status: Annotated[str | None, Query(pattern=STATUSES)] = None,
    reference: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    async with c.sessions() as session:
        return await list_payouts(
            session, caller, status=status, reference=reference, limit=limit, cursor=cursor
        )


@router.post(
    "/payouts/{payout_id}/approve",
    summary="Approve a payout awaiting approval (with another API key than the requester's)",
    openapi_extra=NO_BODY_EXAMPLE,
)
async def approve_payout(payout_id: str, c: ContainerDep, caller: CallerDep) -> dict[str, Any]:
    return await c.money.payouts.approve(payout_id, caller=caller)


@router.post(
    "/payouts/{payout_id}/cancel",
    summary="Cancel a payout that is still awaiting approval",
    openapi_extra=NO_BODY_EXAMPLE,
)
async def cancel_payout(payout_id: str, c: ContainerDep, caller: CallerDep) -> dict[str, Any]:
    return await c.money.payouts.cancel(payout_id, caller=caller)


@admin_router.post(
    "/payouts/{payout_id}/approve",
    summary="Approve a payout awaiting approval (admin)",
    openapi_extra=NO_BODY_EXAMPLE,
)
async def admin_approve_payout(payout_id: str, c: ContainerDep, _: AdminDep) -> dict[str, Any]:
    return await c.money.payouts.approve(payout_id, caller=None)
