"""Merchant API: events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from lipwa.api.deps import CallerDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.services.events import event_view, get_event, list_events

router = APIRouter(prefix="/v1", tags=["events"], responses=ERROR_RESPONSES)


@router.get(
    "/events",
    summary="List events oldest first; keep next_cursor to poll for new ones (events younger "
    "than LIPWA_EVENTS_SETTLE_S come again in the next poll: drop repeats by id)",
)
async def read_events(
    c: ContainerDep,
    caller: CallerDep,
    type: Annotated[str | None, Query(description="e.g. payment.succeeded")] = None,
    resource_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    async with c.sessions() as session:
        return await list_events(
            session,
            caller,
            type_=type,
            resource_id=resource_id,
            limit=limit,
            cursor=cursor,
            settle_s=c.settings.events_settle_s,
        )


@router.get("/events/{event_id}", summary="Read an event")
async def read_event(event_id: str, c: ContainerDep, caller: CallerDep) -> dict[str, Any]:
    async with c.sessions() as session:
        return event_view(await get_event(session, caller, event_id))
