"""Admin API: the audit log (Bearer LIPWA_ADMIN_TOKEN)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from lipwa.api.deps import AdminDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.errors import invalid
from lipwa.services.audit import MAX_LIMIT, AuditFilter, entry_view, list_entries

router = APIRouter(prefix="/admin/v1", tags=["admin"], responses=ERROR_RESPONSES)


@router.get("/audit", summary="Read the audit log, newest first")
async def read_audit(
    c: ContainerDep,
    _: AdminDep,
    action: Annotated[str | None, Query(examples=["flag.set"])] = None,
    target: Annotated[str | None, Query(examples=["provider:mpesa"])] = None,
    merchant_id: str | None = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> dict[str, Any]:
    if since is not None and since.tzinfo is None:
        raise invalid("naive_datetime", "since needs a time zone (e.g. Z)", "since")
    async with c.sessions() as session:
        rows = await list_entries(session, AuditFilter(action, target, merchant_id, since, limit))
    return {"object": "list", "data": [entry_view(e) for e in rows]}
