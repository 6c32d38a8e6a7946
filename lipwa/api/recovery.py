"""Recovery over HTTP: a merchant's "check now", the operator's backlog view and circuits."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from lipwa.api.deps import AdminDep, CallerDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.services.payments import get_payment
from lipwa.services.recovery_stats import recovery_stats
from lipwa.services.transitions import OPEN_STATUSES, payment_view

router = APIRouter(prefix="/v1", tags=["payments"], responses=ERROR_RESPONSES)
admin_router = APIRouter(prefix="/admin/v1", tags=["admin"], responses=ERROR_RESPONSES)


@router.post(
    "/payments/{payment_id}/refresh",
    summary="Ask the provider for this payment's status now and return the payment",
    description="For a pending or unknown payment Lipwa queries the provider at once and "
    "applies a final answer; a final payment is returned as it is. Safe to repeat (no "
    "Idempotency-Key needed): it never charges twice. The one request it may send is a MoMo "
    "request-to-pay whose first send never reached MTN, again under the same X-Reference-Id, "
    "which MTN takes at most once.",
)
async def refresh_payment(payment_id: str, c: ContainerDep, caller: CallerDep) -> dict[str, Any]:
    async with c.sessions() as session:
        payment = await get_payment(session, caller, payment_id)
    if payment.status in OPEN_STATUSES:
        await c.recovery.check(payment.id, "refresh")
        async with c.sessions() as session:
            payment = await get_payment(session, caller, payment_id)
    return payment_view(payment)


@admin_router.get(
    "/recovery",
    summary="Open payments by state and age, what resolved them in the last 24 h, the oldest",
)
async def read_recovery(
    c: ContainerDep, _: AdminDep, merchant_id: str | None = None
) -> dict[str, Any]:
    async with c.sessions() as session:
        return await recovery_stats(session, merchant_id)


@admin_router.get(
    "/circuits",
    summary="Provider accounts whose circuit breaker saw failures (this process only)",
)
async def read_circuits(c: ContainerDep, _: AdminDep) -> dict[str, Any]:
    return {
        "object": "list",
        "scope": "process",
        "failures_to_open": c.circuits.failures,
        "cooldown_s": c.circuits.cooldown_s,
        "data": c.circuits.snapshot(),
    }
