"""Revenue reports: every merchant (admin) or the calling merchant (API key)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from lipwa.api.deps import AdminDep, CallerDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.services.revenue import parse_day, revenue_report

router = APIRouter(prefix="/v1", tags=["reports"], responses=ERROR_RESPONSES)
admin_router = APIRouter(prefix="/admin/v1", tags=["reports"], responses=ERROR_RESPONSES)

DESCRIPTION = (
    "Per merchant, currency and day (the local day of the currency's market, by creation "
    "time): payments, succeeded, failed, open, success rate (succeeded / final), gross, "
    "provider fees (estimates unless the merchant's contract tariff is configured), platform "
    "fees and net to the merchant, plus totals over the range. `from` and `to` are inclusive "
    "dates."
)

FromDay = Annotated[str, Query(alias="from", description="First day, YYYY-MM-DD")]
ToDay = Annotated[str, Query(alias="to", description="Last day, YYYY-MM-DD (inclusive)")]


@router.get("/reports/revenue", summary="Your revenue by currency and day", description=DESCRIPTION)
async def my_revenue(
    c: ContainerDep, caller: CallerDep, from_: FromDay, to: ToDay
) -> dict[str, Any]:
    first, last = parse_day(from_, "from"), parse_day(to, "to")
    async with c.sessions() as session:
        return await revenue_report(
            session, first, last, mode=caller.mode, merchant_id=caller.merchant_id
        )


@admin_router.get(
    "/reports/revenue", summary="Revenue by merchant, currency and day", description=DESCRIPTION
)
async def revenue(
    c: ContainerDep,
    _: AdminDep,
    from_: FromDay,
    to: ToDay,
    merchant_id: str | None = None,
    mode: Literal["live", "test"] = "live",
) -> dict[str, Any]:
    first, last = parse_day(from_, "from"), parse_day(to, "to")
    async with c.sessions() as session:
        return await revenue_report(session, first, last, mode=mode, merchant_id=merchant_id)
