"""The hosted checkout: link page, live progress (SSE with a polling fallback), receipt.

Routes (public; a payment is reached only through its signed token, never its id):
  GET  /l/{slug}               the link: amount, phone, detected network
  POST /l/{slug}               start the payment (CSRF + one-time attempt nonce)
  GET  /l/{slug}/network       JSON: the network of a typed number (for the live hint)
  GET  /c/{token}              progress, then the outcome in plain words and a retry
  GET  /c/{token}/status       JSON status (polling fallback)
  GET  /c/{token}/events       server-sent events: the status each time it changes
  POST /c/{token}/retry        a new attempt for the same phone and amount
  GET  /c/{token}/receipt      the printable receipt
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from lipwa.api.deps import ContainerDep
from lipwa.container import Container
from lipwa.domain.errors import DomainError
from lipwa.domain.phones import normalise_phone, provider_for_network
from lipwa.errors import ApiError
from lipwa.services import links
from lipwa.services.collect import COUNTRY_FOR_CURRENCY
from lipwa.services.links import CheckoutRequest
from lipwa.services.modes import mode_refusal
from lipwa.services.transitions import OPEN_STATUSES
from lipwa.store.tables import Payment, PaymentLink
from lipwa.web import i18n
from lipwa.web.render import (
    money,
    page_language,
    provider_name,
    remember_language,
    render,
    security,
)
from lipwa.web.stream_slots import StreamSlots

log = structlog.get_logger("lipwa.web.checkout")
router = APIRouter(include_in_schema=False)

SSE_POLL_S = 0.5
SSE_MAX_S = 300.0
SSE_HEARTBEAT_S = 15.0

_PAUSED = {"provider_disabled"}
_LINK_CLOSED = {"link_busy", "link_used", "link_expired", "link_disabled"}
_WAIT = {"payer_busy", "same_amount_too_soon", "rate_limited", "idempotency_in_progress"}
_NETWORK = {"unsupported_network", "no_account_for_network", "currency_not_supported"}
_PHONE = {"invalid_phone", "unsupported_country", "ambiguous_phone"}
_AMOUNT = {"invalid_amount", "amount_too_small", "amount_too_large", "amount_not_whole"}
_AMOUNT |= {"daily_limit_exceeded"}


# ----- helpers ---------------------------------------------------------------------------------
async def _link(c: Container, slug: str) -> tuple[PaymentLink | None, str]:
    async with c.sessions() as session:
        link = await links.link_by_slug(session, slug)
        if link is None or mode_refusal(c.settings.mode, link.mode) is not None:
            return None, ""
        return link, await links.merchant_name(session, link.merchant_id)


def _missing(request: Request, lang: str) -> Response:
    return render(
        request,
        "message.html",
        status=404,
        lang=lang,
        title=i18n.t(lang, "link_missing"),
        message=i18n.t(lang, "link_missing"),
    )


async def _paused(c: Container, merchant_id: str) -> bool:
    """The gateway or this merchant is switched off (provider switches answer at submit)."""
    try:
        flags = await c.flags.current()
    except Exception:  # the switches must never break the page; submit re-checks them
        log.warning("flags_unavailable", exc_info=True)
        return False
    return any(
        (flag := flags.get(key)) is not None and not flag.enabled
        for key in ("gateway", f"merchant:{merchant_id}")
    )


def _link_context(link: PaymentLink, merchant: str, lang: str) -> dict[str, Any]:
    amount = money(link.amount, link.currency) if link.amount is not None else None
    return {
        "link": link,
        "merchant": merchant,
        "amount_text": amount,
        "test_mode": link.mode == "test",
        "phone_example": i18n.PHONE_EXAMPLES.get(link.currency, "+46 733 123 450"),
        "page_title": i18n.t(lang, "pay_title", merchant=merchant),
    }


def _refusal_text(lang: str, error: ApiError, merchant: str) -> tuple[str, str | None]:
    """The payer's words for a refusal before any prompt, and the field it concerns."""
    code = error.code
    if code in _PAUSED:
        return i18n.t(lang, "err_paused", merchant=merchant), None
    if code in _LINK_CLOSED:  # another payer got there first, or the link closed meanwhile
        return i18n.t(lang, code, merchant=merchant), None
    if code in _WAIT:
        seconds = error.headers.get("Retry-After", "")
        if seconds.isdigit() and 0 < int(seconds) <= 600:
            return i18n.t(lang, "err_wait_seconds", seconds=seconds), None
        return i18n.t(lang, "err_wait"), None
    if code == "duplicate_payment":
        return i18n.t(lang, "err_duplicate"), None
    if code in _NETWORK:
        return i18n.t(lang, "err_network", merchant=merchant), "phone"
    if code in _PHONE:
        detail = error.message if lang == "en" else ""
        key = "err_phone" if detail else "err_phone_short"
        return i18n.t(lang, key, detail=detail.split(" Send ")[0]), "phone"
    if code in _AMOUNT:
        return i18n.t(lang, "err_amount", detail=error.message), "amount"
    return i18n.t(lang, "err_generic"), None


def _checkout_page(
    request: Request,
    link: PaymentLink,
    merchant: str,
    lang: str,
    *,
    status: int = 200,
    error: str | None = None,
    error_field: str | None = None,
    phone: str = "",
    amount: str = "",
    closed: str | None = None,
) -> Response:
    response = render(
        request,
        "checkout.html",
        status=status,
        lang=lang,
        attempt=secrets.token_urlsafe(16),
        error=error,
        error_field=error_field,
        phone=phone,
        amount=amount,
        closed=closed,
        **_link_context(link, merchant, lang),
    )
    remember_language(request, response, lang)
    return response


def _token_url(request: Request, payment_id: str, suffix: str = "") -> str:
    return f"/c/{security(request).payment_token(payment_id)}{suffix}"


async def _payment_for(c: Container, request: Request, token: str) -> Payment | None:
    payment_id = security(request).payment_id(token)
    if payment_id is None:
        return None
    async with c.sessions() as session:
        payment = await session.get(Payment, payment_id, populate_existing=True)
    if payment is None or mode_refusal(c.settings.mode, payment.mode) is not None:
        return None
    return payment


async def _link_of(c: Container, payment: Payment) -> tuple[PaymentLink | None, str]:
    async with c.sessions() as session:
        link = await session.get(PaymentLink, payment.link_id or payment.reference)
        if link is None or link.merchant_id != payment.merchant_id:
            link = None
        return link, await links.merchant_name(session, payment.merchant_id)


def _status_view(request: Request, payment: Payment, lang: str) -> dict[str, Any]:
    final = payment.status not in OPEN_STATUSES
    provider = provider_name(payment.provider)
    view: dict[str, Any] = {
        "status": payment.status,
        "final": final,
        "message": i18n.t(lang, "progress_waiting")
        if payment.status == "pending"
        else i18n.t(lang, "progress_checking", provider=provider),
    }
    if payment.status == "succeeded":
        view["message"] = i18n.t(lang, "succeeded")
        view["receipt_url"] = _token_url(request, payment.id, "/receipt")
    elif payment.status == "failed":
        view["message"] = i18n.outcome(lang, payment.failure_code)
        view["failure_code"] = payment.failure_code
    return view


# ----- the link page ---------------------------------------------------------------------------
@router.get("/l/{slug}")
async def link_page(slug: str, request: Request, c: ContainerDep) -> Response:
    lang = page_language(request)
    link, merchant = await _link(c, slug)
    if link is None:
        return _missing(request, lang)
    async with c.sessions() as session:
        state = await links.link_state(session, link)
    if not state.open:
        key = f"link_{state.reason}"
        return _checkout_page(
            request,
            link,
            merchant,
            lang,
            status=410 if state.reason != "busy" else 200,
            closed=i18n.t(lang, key, merchant=merchant),
        )
    if await _paused(c, link.merchant_id):
        return _checkout_page(
            request, link, merchant, lang, closed=i18n.t(lang, "err_paused", merchant=merchant)
        )
    return _checkout_page(request, link, merchant, lang)


@router.post("/l/{slug}")
async def link_pay(
    slug: str,
    request: Request,
    c: ContainerDep,
    phone: str = Form("", max_length=40),
    amount: str = Form("", max_length=24),
    attempt: str = Form("", max_length=64),
    csrf_token: str = Form("", max_length=128),
) -> Response:
    lang = page_language(request)
    link, merchant = await _link(c, slug)
    if link is None:
        return _missing(request, lang)

    def again(text: str, field: str | None = None, status: int = 400) -> Response:
        return _checkout_page(
            request,
            link,
            merchant,
            lang,
            status=status,
            error=text,
            error_field=field,
            phone=phone,
            amount=amount,
        )

    if not security(request).csrf_ok(request, csrf_token) or len(attempt) < 16:
        return again(i18n.t(lang, "err_expired_form"), status=403)
    async with c.sessions() as session:
        state = await links.link_state(session, link)
    if not state.open:
        return _checkout_page(
            request,
            link,
            merchant,
            lang,
            status=409,
            closed=i18n.t(lang, f"link_{state.reason}", merchant=merchant),
        )
    if not phone.strip():
        return again(i18n.t(lang, "err_phone_short"), "phone")
    try:
        value = links.payer_amount(link, amount)
        outcome = await links.start_checkout(
            c.collect, link, CheckoutRequest(phone, value, attempt)
        )
    except ApiError as exc:
        text, field = _refusal_text(lang, exc, merchant)
        status = 503 if exc.code in _PAUSED else 409 if exc.code in _LINK_CLOSED else 400
        return again(text, field, status)
    return RedirectResponse(_token_url(request, outcome.body["id"]), status_code=303)


@router.get("/l/{slug}/network")
async def link_network(slug: str, request: Request, c: ContainerDep, phone: str = "") -> Response:
    """The network of a typed number, for the hint under the field (no account details)."""
    lang = page_language(request)
    link, _ = await _link(c, slug)
    if link is None:
        return JSONResponse({"network": None}, status_code=404)
    try:
        found = normalise_phone(
            phone[:40],
            COUNTRY_FOR_CURRENCY.get(link.currency),
            prefix_overrides=c.settings.prefix_overrides,
        )
    except DomainError:
        return JSONResponse({"network": None, "label": ""})
    label = i18n.NETWORKS.get(found.network.value, found.network.value)
    supported = provider_for_network(found.network) is not None
    key = "network_detected" if supported else "network_unsupported"
    return JSONResponse(
        {
            "network": found.network.value,
            "supported": supported,
            "label": i18n.t(lang, key, network=label),
        }
    )


# ----- progress --------------------------------------------------------------------------------
@router.get("/c/{token}")
async def progress_page(token: str, request: Request, c: ContainerDep) -> Response:
    lang = page_language(request)
    payment = await _payment_for(c, request, token)
    if payment is None:
        return _missing(request, lang)
    link, merchant = await _link_of(c, payment)
    if payment.status == "succeeded":
        return RedirectResponse(f"/c/{token}/receipt", status_code=303)
    retry_open = False
    if payment.status == "failed" and link is not None:
        async with c.sessions() as session:
            retry_open = (await links.link_state(session, link)).open
    response = render(
        request,
        "progress.html",
        lang=lang,
        payment=payment,
        merchant=merchant,
        link=link,
        token=token,
        attempt=secrets.token_urlsafe(16),
        retry_open=retry_open,
        view=_status_view(request, payment, lang),
        page_title=i18n.t(lang, "progress_title"),
        outcome=i18n.outcome(lang, payment.failure_code),
    )
    remember_language(request, response, lang)
    return response


@router.get("/c/{token}/status")
async def progress_status(token: str, request: Request, c: ContainerDep) -> Response:
    payment = await _payment_for(c, request, token)
    if payment is None:
        return JSONResponse({"error": "not_found"}, status_code=404)
    view = _status_view(request, payment, page_language(request))
    return JSONResponse(view, headers={"cache-control": "no-store"})


@router.get("/c/{token}/events")
async def progress_events(token: str, request: Request, c: ContainerDep) -> Response:
    """Server-sent events of the payment's status, while a stream slot is free (429 else:
    the page then polls ``/status``)."""
    payment = await _payment_for(c, request, token)
    if payment is None:
        return JSONResponse({"error": "not_found"}, status_code=404)
    lang = page_language(request)
    payment_id = payment.id
    slots: StreamSlots = request.app.state.stream_slots
    slot = slots.take(payment_id)
    if slot is None:
        return JSONResponse(
            {"error": "too_many_streams"}, status_code=429, headers={"retry-after": "5"}
        )

    async def stream() -> AsyncIterator[str]:
        try:
            async for chunk in _progress(request, c, payment_id, lang):
                yield chunk
        finally:  # also when the client goes away mid-stream
            slot.release()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        background=BackgroundTask(slot.release),  # a stream never started gives it back too
    )


async def _progress(
    request: Request, c: Container, payment_id: str, lang: str
) -> AsyncIterator[str]:
    """One ``data:`` line per status change; ends at a final status (or after 5 minutes).
    Each read is its own short session: nothing is held open between polls."""
    loop = asyncio.get_running_loop()
    started = last_beat = loop.time()
    last = ""
    yield "retry: 2000\n\n"
    while True:
        async with c.sessions() as session:
            current = await session.get(Payment, payment_id, populate_existing=True)
        if current is None:
            return
        data = json.dumps(_status_view(request, current, lang))
        if data != last:
            yield f"data: {data}\n\n"
            last = data
        if current.status not in OPEN_STATUSES:
            return
        now = loop.time()
        if now - started > SSE_MAX_S or await request.is_disconnected():
            return
        if now - last_beat > SSE_HEARTBEAT_S:
            yield ": keep-alive\n\n"
            last_beat = now
        await asyncio.sleep(SSE_POLL_S)


@router.post("/c/{token}/retry")
async def progress_retry(
    token: str,
    request: Request,
    c: ContainerDep,
    attempt: str = Form("", max_length=64),
    csrf_token: str = Form("", max_length=128),
) -> Response:
    lang = page_language(request)
    payment = await _payment_for(c, request, token)
    if payment is None:
        return _missing(request, lang)
    link, merchant = await _link_of(c, payment)
    if link is None or payment.status != "failed":
        return RedirectResponse(f"/c/{token}", status_code=303)
    if not security(request).csrf_ok(request, csrf_token) or len(attempt) < 16:
        return _checkout_page(
            request, link, merchant, lang, status=403, error=i18n.t(lang, "err_expired_form")
        )
    async with c.sessions() as session:
        state = await links.link_state(session, link)
    if not state.open:
        return _checkout_page(
            request,
            link,
            merchant,
            lang,
            status=409,
            closed=i18n.t(lang, f"link_{state.reason}", merchant=merchant),
        )
    try:
        outcome = await links.start_checkout(
            c.collect, link, CheckoutRequest(payment.phone, payment.amount, attempt)
        )
    except ApiError as exc:
        text, field = _refusal_text(lang, exc, merchant)
        return _checkout_page(
            request,
            link,
            merchant,
            lang,
            status=503 if exc.code in _PAUSED else 409 if exc.code in _LINK_CLOSED else 400,
            error=text,
            error_field=field,
        )
    return RedirectResponse(_token_url(request, outcome.body["id"]), status_code=303)


# ----- receipt ---------------------------------------------------------------------------------
@router.get("/c/{token}/receipt")
async def receipt_page(token: str, request: Request, c: ContainerDep) -> Response:
    lang = page_language(request)
    payment = await _payment_for(c, request, token)
    if payment is None:
        return _missing(request, lang)
    if payment.status != "succeeded":
        return RedirectResponse(f"/c/{token}", status_code=303)
    link, merchant = await _link_of(c, payment)
    response = render(
        request,
        "receipt.html",
        lang=lang,
        payment=payment,
        merchant=merchant,
        link=link,
        token=token,
        page_title=f"{i18n.t(lang, 'receipt')} · {merchant}",
    )
    remember_language(request, response, lang)
    return response
