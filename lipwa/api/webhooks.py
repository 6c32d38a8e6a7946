"""Merchant API: webhook endpoints, and redelivering events to them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.api.deps import CallerDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.errors import invalid
from lipwa.services import webhook_endpoints as endpoints
from lipwa.services import webhooks
from lipwa.services.events import get_event
from lipwa.services.webhook_endpoints import Answer

router = APIRouter(prefix="/v1", tags=["webhooks"], responses=ERROR_RESPONSES)

IDEMPOTENCY_KEY_MAX = 255
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(description="Optional. The same key with the same body replays the answer."),
]


class RedeliverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    endpoint_id: str | None = None


def _check_key(key: str | None) -> None:
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
        raise invalid(
            "idempotency_key_too_long",
            f"Idempotency-Key is at most {IDEMPOTENCY_KEY_MAX} characters",
            "Idempotency-Key",
        )


def _respond(answer: Answer) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


@router.post(
    "/webhook-endpoints",
    status_code=201,
    summary="Register a webhook endpoint; its signing secret is shown in this answer only",
)
async def create_webhook_endpoint(
    body: endpoints.EndpointIn,
    c: ContainerDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    _check_key(idempotency_key)

    async def action(session: AsyncSession) -> dict[str, Any]:
        endpoint, secret = await endpoints.create_endpoint(session, c.vault, caller, body)
        return endpoints.endpoint_view(endpoint, secret)

    answer = await endpoints.Idempotent(c.sessions, c.vault).run(
        caller,
        idempotency_key,
        "POST /v1/webhook-endpoints",
        body.model_dump(mode="json"),
        action,
        status=201,
    )
    return _respond(answer)


@router.get("/webhook-endpoints", summary="List webhook endpoints (secrets are never shown)")
async def read_webhook_endpoints(c: ContainerDep, caller: CallerDep) -> dict[str, Any]:
    async with c.sessions() as session:
        rows = await endpoints.list_endpoints(session, caller)
    return {"object": "list", "data": [endpoints.endpoint_view(e) for e in rows], "has_more": False}


@router.get("/webhook-endpoints/{endpoint_id}", summary="Read a webhook endpoint")
async def read_webhook_endpoint(
    endpoint_id: str, c: ContainerDep, caller: CallerDep
) -> dict[str, Any]:
    async with c.sessions() as session:
        return endpoints.endpoint_view(await endpoints.get_endpoint(session, caller, endpoint_id))


@router.delete(
    "/webhook-endpoints/{endpoint_id}",
    summary="Disable a webhook endpoint; its pending deliveries are dropped",
)
async def disable_webhook_endpoint(
    endpoint_id: str, c: ContainerDep, caller: CallerDep
) -> dict[str, Any]:
    async with c.sessions() as session, session.begin():
        endpoint = await endpoints.disable_endpoint(session, caller, endpoint_id)
        return endpoints.endpoint_view(endpoint)


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    summary="New signing secret (shown once); the old one also signs for 24 h by default",
)
async def rotate_webhook_secret(
    endpoint_id: str,
    c: ContainerDep,
    caller: CallerDep,
    body: endpoints.RotateIn | None = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    _check_key(idempotency_key)
    data = body or endpoints.RotateIn()

    async def action(session: AsyncSession) -> dict[str, Any]:
        endpoint, secret, expires = await endpoints.rotate_secret(
            session, c.vault, caller, endpoint_id, data
        )
        view = endpoints.endpoint_view(endpoint, secret)
        view["previous_secret_expires_at"] = expires.isoformat() if expires else None
        return view

    answer = await endpoints.Idempotent(c.sessions, c.vault).run(
        caller,
        idempotency_key,
        f"POST /v1/webhook-endpoints/{endpoint_id}/rotate-secret",
        data.model_dump(mode="json"),
        action,
    )
    return _respond(answer)


@router.post(
    "/events/{event_id}/redeliver",
    summary="Send an event again now (to one endpoint, or to every subscribed one)",
)
async def redeliver_event(
    event_id: str, c: ContainerDep, caller: CallerDep, body: RedeliverIn | None = None
) -> dict[str, Any]:
    async with c.sessions() as session, session.begin():
        event = await get_event(session, caller, event_id)
        endpoint_id = body.endpoint_id if body else None
        queued = await webhooks.redeliver(session, event, endpoint_id)
        return {"object": "list", "data": [webhooks.delivery_view(d) for d in queued]}


@router.get(
    "/events/{event_id}/deliveries", summary="An event's webhook deliveries and every attempt"
)
async def read_event_deliveries(
    event_id: str, c: ContainerDep, caller: CallerDep
) -> dict[str, Any]:
    async with c.sessions() as session:
        event = await get_event(session, caller, event_id)
        records = await webhooks.deliveries_for(session, event)
    return {
        "object": "list",
        "data": [webhooks.delivery_view(r.delivery, r.attempts) for r in records],
    }
