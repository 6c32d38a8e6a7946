"""Merchant API: payments."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from lipwa.api.deps import CallerDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.errors import invalid
from lipwa.services.collect import PaymentIn
from lipwa.services.payments import PaymentFilter, get_payment, list_payments
from lipwa.services.transitions import payment_view

router = APIRouter(prefix="/v1", tags=["payments"], responses=ERROR_RESPONSES)

IDEMPOTENCY_KEY_MAX = 200  # stored with a mode prefix in a 255-character column


@router.post(
    "/payments",
    status_code=201,
    summary="Ask a phone for money (M-Pesa STK push or MoMo request-to-pay)",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "examples": {
                        "mpesa": {
                            "summary": "M-Pesa, Kenya",
                            "value": {
                                "amount": "100",
                                "currency": "KES",
                                "phone": "0708374149",
                                "reference": "order-42",
                                "description": "Order 42",
                            },
                        },
                        "momo": {
                            "summary": "MTN MoMo, Rwanda",
                            "value": {
                                "amount": "1500",
                                "currency": "RWF",
                                "phone": "+250788123456",
                                "reference": "tab-7",
                            },
                        },
                    }
                }
            }
        }
    },
)
async def create_payment(
    body: PaymentIn,
    c: ContainerDep,
    caller: CallerDep,
    idempotency_key: Annotated[
        str | None,
        Header(description="Required. The same key with the same body replays the response."),
    ] = None,
) -> JSONResponse:
    if not idempotency_key:
        raise invalid(
            "idempotency_key_required",
            "Send an Idempotency-Key header (e.g. a UUID) so a retry never charges twice",
            "Idempotency-Key",
        )
    if len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
        raise invalid(
            "idempotency_key_too_long",
            f"Idempotency-Key is at most {IDEMPOTENCY_KEY_MAX} characters",
            "Idempotency-Key",
        )
    outcome = await c.collect.create(caller, body, idempotency_key)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return JSONResponse(outcome.body, status_code=outcome.status, headers=headers)


@router.get("/payments/{payment_id}", summary="Read a payment")
async def read_payment(payment_id: str, c: ContainerDep, caller: CallerDep) -> dict[str, Any]:
    async with c.sessions() as session:
        return payment_view(await get_payment(session, caller, payment_id))


@router.get("/payments", summary="List payments, newest first (cursor pagination)")
async def read_payments(
    c: ContainerDep,
    caller: CallerDep,
    status: Annotated[str | None, Query(pattern="^(pending|unknown|succeeded|failed)$")] = None,
    reference: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    for name, value in (("created_from", created_from), ("created_to", created_to)):
        if value is not None and value.tzinfo is None:
            raise invalid("naive_datetime", f"{name} needs a time zone (e.g. Z)", name)
    async with c.sessions() as session:
        return await list_payments(
            session,
            caller,
            PaymentFilter(status, reference, created_from, created_to, limit, cursor),
        )
