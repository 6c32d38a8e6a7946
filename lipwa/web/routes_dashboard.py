"""The operator dashboard (admin session): payments, timelines, charts, switches, doctor.

Routes:
  GET  /dashboard                    charts (volume, success rate, failure codes, latency when
                                     metrics exist), recovery backlog, webhook health,
                                     reconciliation runs
  GET  /dashboard/payments           table with filters and search
  GET  /dashboard/payments/{id}      one payment's timeline
  GET  /dashboard/merchants          merchants, to their setup pages
  GET  /dashboard/flags              kill switches and rollouts
  POST /dashboard/flags/review       step 1: what will change (nothing written)
  POST /dashboard/flags/apply        step 2: confirmed: write the flag and its audit entry
  GET  /dashboard/doctor             the doctor's checklist (offline checks)
Panels whose service is absent are hidden rather than broken.
"""

from __future__ import annotations

import asyncio
import importlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select

from lipwa.api.deps import ContainerDep
from lipwa.clock import utcnow
from lipwa.container import Container
from lipwa.domain.errors import DomainError
from lipwa.domain.states import describe_failure
from lipwa.errors import ApiError
from lipwa.services.recovery_stats import recovery_stats
from lipwa.store.tables import Merchant, Payment, PaymentLink
from lipwa.web import charts
from lipwa.web import dashboard_queries as q
from lipwa.web.auth import current_session, to_signin
from lipwa.web.render import render, security, svg
from lipwa.web.security import Session

log = structlog.get_logger("lipwa.web.dashboard")
router = APIRouter(include_in_schema=False)

STATUSES = ("pending", "unknown", "succeeded", "failed")
PROVIDERS = ("mpesa", "momo")
FLAG_HINTS = (
    "gateway",
    "provider:mpesa",
    "provider:momo",
    "merchant:<id>",
    "account:<id>",
    "rollout:mpesa",
    "rollout:momo",
)
DOCTOR_TIMEOUT_S = 15.0


async def _admin(request: Request, c: Container) -> Session | Response:
    session = await current_session(request, c)
    if session is None:
        return to_signin(request)
    if not session.is_admin:
        return render(
            request,
            "message.html",
            status=403,
            session=session,
            title="Operators only",
            message="The dashboard needs the admin token; your API key opens your setup page.",
        )
    return session


# ----- overview --------------------------------------------------------------------------------
def latency_rows() -> list[dict[str, Any]]:
    """Provider call latency from this process's Prometheus histogram (empty when absent)."""
    try:
        metrics = importlib.import_module("lipwa.metrics")
        histogram = metrics.PROVIDER_REQUESTS
    except (ImportError, AttributeError):
        return []
    series: dict[tuple[str, str], dict[str, Any]] = {}
    for metric in histogram.collect():
        for sample in metric.samples:
            labels = sample.labels
            key = (labels.get("provider", "?"), labels.get("operation", "?"))
            entry = series.setdefault(key, {"count": 0.0, "sum": 0.0, "buckets": {}})
            if sample.name.endswith("_count"):
                entry["count"] += sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] += sample.value
            elif sample.name.endswith("_bucket"):
                bound = float(labels["le"])
                entry["buckets"][bound] = entry["buckets"].get(bound, 0.0) + sample.value
    rows = []
    for (provider, operation), entry in sorted(series.items()):
        count = entry["count"]
        if not count:
            continue
        p95 = next(
            (b for b, n in sorted(entry["buckets"].items()) if n >= 0.95 * count), float("inf")
        )
        rows.append(
            {
                "name": f"{provider} {operation}",
                "count": int(count),
                "mean_ms": 1000 * entry["sum"] / count,
                "p95": "> 30 s" if p95 == float("inf") else f"≤ {p95 * 1000:.0f} ms",
            }
        )
    return rows


@router.get("/dashboard")
async def overview(request: Request, c: ContainerDep, window: str = "24h") -> Response:
    session = await _admin(request, c)
    if isinstance(session, Response):
        return session
    window = window if window in q.WINDOWS else "24h"
    now = utcnow()
    async with c.sessions() as db:
        data = await q.overview(db, window, now)
        backlog = await recovery_stats(db)
        runs = await q.reconciliation_runs(db)
    latency = latency_rows()
    volume_chart = charts.line_chart(
        f"Payments per {'hour' if window == '24h' else 'day'} by provider",
        data.labels,
        data.volume,
    )
    rate_chart = charts.line_chart(
        "Success rate (succeeded / final) by provider",
        data.labels,
        data.success_rate,
        y_max=100,
        unit="%",
    )
    codes_chart = charts.hbar_chart(
        "Failure codes", data.failure_codes, empty="No failures in this window", colour="#8b1a4a"
    )
    backlog_items = [
        (f"{status} {label.replace('_', ' ')}", float(n))
        for status, buckets in backlog["backlog"].items()
        for label, n in buckets.items()
        if label != "total" and n
    ]
    backlog_chart = charts.hbar_chart(
        "Open payments by state and age", backlog_items, empty="No open payments"
    )
    webhook_chart = charts.hbar_chart(
        "Webhook deliveries by status",
        [(k, float(v)) for k, v in sorted(data.webhooks.items())]
        + [(f"attempts {k}", float(v)) for k, v in sorted(data.webhook_attempts.items())],
        empty="No webhook deliveries in this window",
    )
    latency_chart = (
        charts.hbar_chart(
            "Mean provider call latency (this process)",
            [(r["name"], round(r["mean_ms"], 1)) for r in latency],
            unit=" ms",
        )
        if latency
        else None
    )
    return render(
        request,
        "dashboard.html",
        session=session,
        page_title="Dashboard",
        nav="overview",
        window=window,
        data=data,
        backlog=backlog,
        runs=runs,
        latency=latency,
        volume_chart=svg(volume_chart),
        rate_chart=svg(rate_chart),
        codes_chart=svg(codes_chart),
        backlog_chart=svg(backlog_chart),
        webhook_chart=svg(webhook_chart),
        latency_chart=svg(latency_chart) if latency_chart else None,
        describe_failure=describe_failure,
    )


# ----- payments --------------------------------------------------------------------------------
def _date(text: str, end: bool = False) -> datetime | None:
    """A filter's day, or None (no filter) when it is not a day the store can hold."""
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    if not 2000 <= day.year <= 2100:
        return None
    return day + timedelta(days=1) if end else day


@router.get("/dashboard/payments")
async def payments(request: Request, c: ContainerDep) -> Response:
    session = await _admin(request, c)
    if isinstance(session, Response):
        return session
    p = request.query_params
    query = q.PaymentQuery(
        status=p.get("status", "") if p.get("status") in STATUSES else "",
        provider=p.get("provider", "") if p.get("provider") in PROVIDERS else "",
        mode=p.get("mode", "") if p.get("mode") in ("test", "live") else "",
        merchant_id=p.get("merchant_id", "")[:40],
        q=p.get("q", "")[:100],
        since=_date(p.get("from", "")),
        until=_date(p.get("to", ""), end=True),
        cursor=p.get("cursor", "")[:200],
    )
    try:
        async with c.sessions() as db:
            rows, next_cursor = await q.list_payments(db, query)
            names = await q.merchant_names(db, {r.merchant_id for r in rows})
    except ApiError:  # a hand-edited cursor
        return RedirectResponse("/dashboard/payments", status_code=303)
    params = {k: v for k, v in p.items() if k != "cursor" and v}
    return render(
        request,
        "payments.html",
        session=session,
        page_title="Payments",
        nav="payments",
        rows=rows,
        names=names,
        query=query,
        form=params,
        next_cursor=next_cursor,
        statuses=STATUSES,
        providers=PROVIDERS,
    )


@router.get("/dashboard/payments/{payment_id}")
async def payment_detail(payment_id: str, request: Request, c: ContainerDep) -> Response:
    session = await _admin(request, c)
    if isinstance(session, Response):
        return session
    async with c.sessions() as db:
        payment = await db.get(Payment, payment_id[:40])
        if payment is None:
            return render(
                request,
                "message.html",
                status=404,
                session=session,
                title="Not found",
                message="No such payment.",
            )
        entries = await q.timeline(db, payment)
        merchant = await db.get(Merchant, payment.merchant_id)
        link = await db.get(PaymentLink, payment.link_id) if payment.link_id else None
    return render(
        request,
        "payment.html",
        session=session,
        page_title=f"Payment {payment.id}",
        nav="payments",
        payment=payment,
        entries=entries,
        merchant=merchant,
        link=link,
        explanation=describe_failure(payment.failure_code) if payment.failure_code else "",
    )


@router.get("/dashboard/merchants")
async def merchants(request: Request, c: ContainerDep) -> Response:
    session = await _admin(request, c)
    if isinstance(session, Response):
        return session
    async with c.sessions() as db:
        rows = list(
            await db.scalars(select(Merchant).order_by(Merchant.created_at.desc()).limit(200))
        )
        counts = dict(
            (
                await db.execute(
                    select(Payment.merchant_id, func.count()).group_by(Payment.merchant_id)
                )
            ).all()
        )
    return render(
        request,
        "merchants.html",
        session=session,
        page_title="Merchants",
        nav="merchants",
        rows=rows,
        counts=counts,
    )


# ----- flags -----------------------------------------------------------------------------------
def _flags_module() -> Any | None:
    try:
        return importlib.import_module("lipwa.services.flags")
    except ImportError:
        return None


async def _flags_page(
    request: Request, c: Container, session: Session, *, status: int = 200, **extra: Any
) -> Response:
    module = _flags_module()
    rows = []
    if module is not None:
        async with c.sessions() as db:
            rows = await module.list_flags(db)
    return render(
        request,
        "flags.html",
        status=status,
        session=session,
        page_title="Kill switches",
        nav="flags",
        available=module is not None,
        flags=rows,
        hints=FLAG_HINTS,
        refresh_s=c.settings.flags_refresh_s,
        **extra,
    )


@router.get("/dashboard/flags")
async def flags_page(request: Request, c: ContainerDep) -> Response:
    session = await _admin(request, c)
    if isinstance(session, Response):
        return session
    changed, state = request.query_params.get("changed"), request.query_params.get("state")
    notice = (
        f"Switch {changed[:100]} is now {state}." if changed and state in ("on", "off") else None
    )
    return await _flags_page(request, c, session, notice=notice)


def _flag_form(key: str, enabled: str, percentage: str, reason: str) -> dict[str, Any]:
    return {
        "key": key.strip(),
        "enabled": enabled == "on",
        "percentage": int(percentage) if percentage.strip().isdigit() else None,
        "reason": reason.strip(),
    }


@router.post("/dashboard/flags/review")
async def flags_review(
    request: Request,
    c: ContainerDep,
    key: str = Form("", max_length=100),
    enabled: str = Form("off"),
    percentage: str = Form("", max_length=3),
    reason: str = Form("", max_length=300),
    csrf_token: str = Form("", max_length=128),
) -> Response:
    session = await _admin(request, c)
    if isinstance(session, Response):
        return session
    change = _flag_form(key, enabled, percentage, reason)
    if not security(request).csrf_ok(request, csrf_token):
        return await _flags_page(request, c, session, status=403, error="The form expired.")
    if not change["key"] or not change["reason"]:
        return await _flags_page(
            request,
            c,
            session,
            status=400,
            error="Give the switch's key and a reason.",
            change=change,
        )
    module = _flags_module()
    current = None
    if module is not None:
        async with c.sessions() as db:
            current = next((f for f in await module.list_flags(db) if f.key == change["key"]), None)
    return render(
        request,
        "flag_confirm.html",
        session=session,
        page_title="Confirm switch",
        nav="flags",
        change=change,
        current=current,
    )


@router.post("/dashboard/flags/apply")
async def flags_apply(
    request: Request,
    c: ContainerDep,
    key: str = Form("", max_length=100),
    enabled: str = Form("off"),
    percentage: str = Form("", max_length=3),
    reason: str = Form("", max_length=300),
    confirm: str = Form(""),
    csrf_token: str = Form("", max_length=128),
) -> Response:
    session = await _admin(request, c)
    if isinstance(session, Response):
        return session
    module = _flags_module()
    change = _flag_form(key, enabled, percentage, reason)
    if module is None or not security(request).csrf_ok(request, csrf_token) or confirm != "yes":
        return await _flags_page(
            request,
            c,
            session,
            status=400,
            error="Not applied: confirm the change on the review step.",
        )
    try:
        async with c.sessions() as db, db.begin():
            await module.set_flag(
                db,
                change["key"],
                enabled=change["enabled"],
                reason=change["reason"],
                actor="admin:dashboard",
                percentage=change["percentage"],
            )
    except DomainError as exc:
        return await _flags_page(request, c, session, status=400, error=exc.message)
    c.flags.invalidate()
    state = "on" if change["enabled"] else "off"
    # Post/redirect/get: a reload never re-applies the change.
    return RedirectResponse(
        f"/dashboard/flags?changed={quote(change['key'])}&state={state}", status_code=303
    )


# ----- doctor ----------------------------------------------------------------------------------
@router.get("/dashboard/doctor")
async def doctor(request: Request, c: ContainerDep) -> Response:
    session = await _admin(request, c)
    if isinstance(session, Response):
        return session
    checks: list[dict[str, Any]] | None = None
    error = None
    try:
        runner = importlib.import_module("lipwa.doctor.runner")
    except ImportError:
        runner = None
    if runner is not None:
        try:
            found = await asyncio.wait_for(runner.run_doctor(c.settings), DOCTOR_TIMEOUT_S)
            checks = [check.as_dict() for check in found]
        except Exception as exc:  # the page reports the doctor's own failure
            log.warning("doctor_failed", exc_info=True)
            error = type(exc).__name__
    return render(
        request,
        "doctor.html",
        session=session,
        page_title="Doctor",
        nav="doctor",
        available=runner is not None,
        checks=checks,
        error=error,
    )
