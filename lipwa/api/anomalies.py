"""Admin API: anomalies, provider reports kept instead of applied (Bearer LIPWA_ADMIN_TOKEN)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from lipwa.api.deps import AdminDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.errors import invalid
from lipwa.services.anomalies import MAX_LIMIT, AnomalyFilter, anomaly_view, list_anomalies

router = APIRouter(prefix="/admin/v1", tags=["admin"], responses=ERROR_RESPONSES)


@router.get(
    "/anomalies",
    summary="Provider reports that contradict a final state or another record, newest first",
)
async def read_anomalies(
    c: ContainerDep,
    _: AdminDep,
    merchant_id: str | None = None,
    kind: Annotated[str | None, Query(examples=["contradicting_report"])] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> dict[str, Any]:
    if since is not None and since.tzinfo is None:
        raise invalid("naive_datetime", "since needs a time zone (e.g. Z)", "since")
    async with c.sessions() as session:
        rows = await list_anomalies(session, AnomalyFilter(merchant_id, kind, since, limit))
    return {"object": "list", "data": [anomaly_view(a) for a in rows]}
