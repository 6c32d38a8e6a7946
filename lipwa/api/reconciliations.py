"""Reconciliation runs over HTTP (admin): read runs and their items, opt accounts in to the
daily run. Runs are made by ``lipwa reconcile`` or the worker's daily job."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from lipwa.api.deps import AdminDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.errors import not_found
from lipwa.reconcile import service
from lipwa.services import audit
from lipwa.store.tables import ProviderAccount

router = APIRouter(prefix="/admin/v1", tags=["reconciliation"], responses=ERROR_RESPONSES)


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    daily: bool


@router.get("/reconciliations", summary="List reconciliation runs, newest first")
async def list_reconciliations(
    c: ContainerDep,
    _: AdminDep,
    account_id: str | None = None,
    merchant_id: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    async with c.sessions() as session:
        return await service.list_runs(
            session, account_id=account_id, merchant_id=merchant_id, limit=limit, cursor=cursor
        )


@router.get(
    "/reconciliations/{run_id}",
    summary="A reconciliation run with one page of its items",
    description="Items in the order they were stored; `kind` filters (comma-separated, e.g. "
    "`missing_at_provider,amount_mismatch`); page on with `after` = the `next_after` given.",
)
async def get_reconciliation(
    run_id: str,
    c: ContainerDep,
    _: AdminDep,
    kind: str | None = None,
    limit: int = 100,
    after: int | None = None,
) -> dict[str, Any]:
    async with c.sessions() as session:
        return await service.get_run(session, run_id, kind=kind, limit=limit, after=after)


@router.put(
    "/accounts/{account_id}/reconciliation",
    summary="Turn the daily reconciliation of a provider account on or off",
)
async def set_schedule(
    account_id: str, body: ScheduleIn, c: ContainerDep, actor: AdminDep
) -> dict[str, Any]:
    async with c.sessions() as session, session.begin():
        account = await session.get(ProviderAccount, account_id)
        if account is None:
            raise not_found("provider account", account_id)
        account.config = {**account.config, "reconcile_daily": body.daily}
        detail = {"reconcile_daily": body.daily}
        await audit.record(
            session, actor, "account.reconciliation", account.id, account.merchant_id, "", detail
        )
        return {"account_id": account.id, "reconcile_daily": body.daily}
