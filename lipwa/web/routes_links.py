"""Merchant API: payment links (hosted checkout), and their public QR codes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.api.deps import CallerDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.errors import ApiError, invalid
from lipwa.services import links
from lipwa.services.modes import mode_refusal
from lipwa.services.webhook_endpoints import Idempotent
from lipwa.store.tables import PaymentLink
from lipwa.web import qr

router = APIRouter(prefix="/v1", tags=["payment links"], responses=ERROR_RESPONSES)
public = APIRouter(tags=["checkout"], include_in_schema=False)

METHOD_PATH = "POST /v1/payment-links"


class LinkStatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str


@router.post(
    "/payment-links",
    status_code=201,
    summary="Create a payment link: a short URL and QR code that opens a hosted checkout",
    description="Fixed `amount`, or omit it to let the payer type one. The answer carries the "
    "`url` to share and `qr_png_url` / `qr_svg_url`. Payments made through the link belong "
    "to the API key's merchant and mode and carry `reference` = the link id.",
)
async def create_link(
    body: links.LinkIn,
    c: ContainerDep,
    caller: CallerDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    if not idempotency_key:
        raise invalid(
            "idempotency_key_required",
            "Send an Idempotency-Key header (e.g. a UUID) so a retry never creates two links",
            "Idempotency-Key",
        )

    async def action(session: AsyncSession) -> dict[str, Any]:
        link = await links.create_link(session, caller, body)
        return links.link_view(link, c.settings.public_url)

    # The mode is part of what a retry is compared by; a concurrent twin replays the answer.
    answer = await Idempotent(c.sessions, c.vault).run(
        caller, idempotency_key, METHOD_PATH, body.model_dump(mode="json"), action, status=201
    )
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


@router.get("/payment-links/{link_id}", summary="Read a payment link")
async def read_link(link_id: str, c: ContainerDep, caller: CallerDep) -> dict[str, Any]:
    async with c.sessions() as session:
        return links.link_view(
            await links.get_link(session, caller, link_id), c.settings.public_url
        )


@router.get("/payment-links", summary="List payment links, newest first")
async def list_links(c: ContainerDep, caller: CallerDep, limit: int = 20) -> dict[str, Any]:
    limit = max(1, min(limit, 100))
    async with c.sessions() as session:
        rows = await session.scalars(
            select(PaymentLink)
            .where(PaymentLink.merchant_id == caller.merchant_id, PaymentLink.mode == caller.mode)
            .order_by(PaymentLink.created_at.desc(), PaymentLink.id.desc())
            .limit(limit)
        )
        return {
            "object": "list",
            "data": [links.link_view(r, c.settings.public_url) for r in rows],
        }


@router.post(
    "/payment-links/{link_id}/status",
    summary="Disable (status 'disabled') or re-enable (status 'active') a payment link",
)
async def set_link_status(
    link_id: str, body: LinkStatusIn, c: ContainerDep, caller: CallerDep
) -> dict[str, Any]:
    if body.status not in {"active", "disabled"}:
        raise invalid("invalid_status", "status is 'active' or 'disabled'", "status")
    async with c.sessions() as session, session.begin():
        link = await links.set_link_status(session, caller, link_id, body.status)
        return links.link_view(link, c.settings.public_url)


async def _link_url(c: ContainerDep, slug: str) -> str:
    async with c.sessions() as session:
        link = await links.link_by_slug(session, slug)
    if link is None or mode_refusal(c.settings.mode, link.mode) is not None:
        raise ApiError(404, "invalid_request_error", "resource_missing", "No such payment link")
    return links.link_url(c.settings.public_url, link)


@public.get("/l/{slug}/qr.png")
async def qr_png(slug: str, c: ContainerDep) -> Response:
    data = qr.png(await _link_url(c, slug))
    return Response(data, media_type="image/png", headers={"cache-control": "max-age=3600"})


@public.get("/l/{slug}/qr.svg")
async def qr_svg(slug: str, c: ContainerDep) -> Response:
    data = qr.svg(await _link_url(c, slug))
    return Response(data, media_type="image/svg+xml", headers={"cache-control": "max-age=3600"})
