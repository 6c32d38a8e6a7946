"""Read-only queries behind the operator dashboard (every merchant; admins only).

Time buckets are computed in Python from (created_at, provider, status) rows of the window, so
the same code runs on SQLite and PostgreSQL; the window is capped (``MAX_ROWS``) and the page
says so when the cap is reached.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.domain.money import format_amount
from lipwa.services.cursors import decode_cursor, encode_cursor
from lipwa.store.tables import (
    Anomaly,
    AuditEntry,
    Event,
    InboundCallback,
    Merchant,
    Payment,
    ReconciliationItem,
    ReconciliationRun,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

MAX_ROWS = 50_000
PAGE = 50
WINDOWS = {
    "24h": (timedelta(hours=24), timedelta(hours=1)),
    "7d": (timedelta(days=7), timedelta(days=1)),
}


# ----- payments table --------------------------------------------------------------------------
@dataclass(frozen=True)
class PaymentQuery:
    status: str = ""
    provider: str = ""
    mode: str = ""
    merchant_id: str = ""
    q: str = ""  # id, reference, receipt, provider ref or the phone's last digits
    since: datetime | None = None
    until: datetime | None = None
    cursor: str = ""


def _filtered(query: PaymentQuery) -> Select[Any]:
    stmt = select(Payment)
    if query.status:
        stmt = stmt.where(Payment.status == query.status)
    if query.provider:
        stmt = stmt.where(Payment.provider == query.provider)
    if query.mode:
        stmt = stmt.where(Payment.mode == query.mode)
    if query.merchant_id:
        stmt = stmt.where(Payment.merchant_id == query.merchant_id)
    if query.since:
        stmt = stmt.where(Payment.created_at >= query.since)
    if query.until:
        stmt = stmt.where(Payment.created_at < query.until)
    text = query.q.strip()
    if text:
        matches = [
            Payment.id == text,
            Payment.reference == text,
            Payment.receipt == text,
            Payment.provider_ref == text,
            Payment.link_id == text,
        ]
        digits = text.lstrip("+").replace(" ", "")
        if digits.isdigit() and 3 <= len(digits) <= 15:
            matches.append(Payment.phone.endswith(digits))
        stmt = stmt.where(or_(*matches))
    return stmt


async def list_payments(db: AsyncSession, query: PaymentQuery) -> tuple[list[Payment], str | None]:
    stmt = _filtered(query)
    if query.cursor:
        created, ident = decode_cursor(query.cursor)
        stmt = stmt.where(
            or_(
                Payment.created_at < created,
                and_(Payment.created_at == created, Payment.id < ident),
            )
        )
    rows = list(
        await db.scalars(
            stmt.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(PAGE + 1)
        )
    )
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return rows, encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None


async def merchant_names(db: AsyncSession, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = await db.execute(select(Merchant.id, Merchant.name).where(Merchant.id.in_(ids)))
    return {ident: name for ident, name in rows.all()}


# ----- overview --------------------------------------------------------------------------------
@dataclass
class Overview:
    labels: list[str]
    volume: dict[str, list[float | None]]
    success_rate: dict[str, list[float | None]]
    failure_codes: list[tuple[str, float]]
    totals: dict[str, Counter[str]]
    amounts: dict[str, Decimal]
    capped: bool
    webhooks: dict[str, int] = field(default_factory=dict)
    webhook_attempts: dict[str, int] = field(default_factory=dict)


def _bucket_start(moment: datetime, step: timedelta) -> datetime:
    if step >= timedelta(days=1):
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


async def overview(db: AsyncSession, window: str, now: datetime) -> Overview:
    span, step = WINDOWS.get(window, WINDOWS["24h"])
    first = _bucket_start(now - span + step, step)
    starts = [first + step * i for i in range(int(span / step))]
    index = {start: i for i, start in enumerate(starts)}
    rows = (
        await db.execute(
            select(
                Payment.created_at,
                Payment.provider,
                Payment.status,
                Payment.currency,
                Payment.amount,
            )
            .where(Payment.created_at >= first)
            .limit(MAX_ROWS)
        )
    ).all()
    providers = sorted({r.provider for r in rows}) or ["mpesa", "momo"]
    counts = {p: [0] * len(starts) for p in providers}
    won = {p: [0] * len(starts) for p in providers}
    lost = {p: [0] * len(starts) for p in providers}
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    for created, provider, status, currency, amount in rows:
        i = index.get(_bucket_start(created, step))
        if i is None:
            continue
        counts[provider][i] += 1
        totals[provider][status] += 1
        if status == "succeeded":
            won[provider][i] += 1
            amounts[currency] += amount
        elif status == "failed":
            lost[provider][i] += 1
    rate = {
        p: [
            round(100 * w / (w + f), 1) if (w + f) else None
            for w, f in zip(won[p], lost[p], strict=True)
        ]
        for p in providers
    }
    fmt = "%d %b" if step >= timedelta(days=1) else "%H:%M"
    codes = (
        await db.execute(
            select(Payment.failure_code, func.count())
            .where(Payment.created_at >= first, Payment.status == "failed")
            .group_by(Payment.failure_code)
            .order_by(func.count().desc())
            .limit(10)
        )
    ).all()
    deliveries = (
        await db.execute(
            select(WebhookDelivery.status, func.count())
            .where(WebhookDelivery.created_at >= first)
            .group_by(WebhookDelivery.status)
        )
    ).all()
    attempts = (
        await db.execute(
            select(WebhookAttempt.status_code, WebhookAttempt.error)
            .where(WebhookAttempt.attempted_at >= first)
            .limit(MAX_ROWS)
        )
    ).all()
    attempt_kinds: Counter[str] = Counter()
    for code, error in attempts:
        if code is not None and 200 <= code < 300:
            attempt_kinds["2xx"] += 1
        elif code is not None:
            attempt_kinds[f"{code // 100}xx"] += 1
        else:
            attempt_kinds["network error" if error else "no answer"] += 1
    return Overview(
        labels=[s.strftime(fmt) for s in starts],
        volume={p: [float(v) for v in counts[p]] for p in providers},
        success_rate=rate,
        failure_codes=[(code or "unknown", float(n)) for code, n in codes],
        totals=dict(totals),
        amounts=dict(amounts),
        capped=len(rows) >= MAX_ROWS,
        webhooks={status: int(n) for status, n in deliveries},
        webhook_attempts=dict(attempt_kinds),
    )


# ----- one payment's timeline ------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    at: datetime | None
    kind: str  # request | provider | callback | event | webhook | recovery | anomaly | audit
    title: str
    detail: str = ""
    raw: str = ""


async def timeline(db: AsyncSession, payment: Payment) -> list[Entry]:
    entries = [
        Entry(
            payment.created_at,
            "request",
            f"Payment request written ahead ({payment.provider}, request id "
            f"{payment.provider_request_id})",
            f"{payment.currency} {format_amount(payment.amount, payment.currency)} · account "
            f"{payment.account_id} · "
            f"channel {payment.channel}",
        ),
        Entry(
            payment.created_at,
            "provider",
            f"Provider answer to the send: {payment.send_state}",
            f"provider ref {payment.provider_ref or '—'}"
            + (
                f" · secondary {payment.provider_secondary_ref}"
                if payment.provider_secondary_ref
                else ""
            )
            + (f" · code {payment.provider_code}" if payment.provider_code else ""),
        ),
    ]
    callbacks = await db.scalars(
        select(InboundCallback)
        .where(InboundCallback.payment_id == payment.id)
        .order_by(InboundCallback.received_at)
    )
    for cb in callbacks:
        entries.append(
            Entry(
                cb.received_at,
                "callback",
                f"Callback {cb.kind} received: {cb.outcome or 'not processed yet'}",
                f"{cb.method} {cb.path.rsplit('/', 1)[-1]} from {cb.remote_addr or '?'}"
                + (f" · {cb.detail}" if cb.detail else ""),
                cb.body[:20_000],
            )
        )
    events = list(
        await db.scalars(
            select(Event)
            .where(Event.resource_id == payment.id, Event.merchant_id == payment.merchant_id)
            .order_by(Event.created_at, Event.id)
        )
    )
    for event in events:
        obj = event.data.get("object", {}) if isinstance(event.data, dict) else {}
        extra = ""
        if obj.get("failure_code"):
            extra = f"failure {obj['failure_code']}"
        if obj.get("receipt"):
            extra = f"receipt {obj['receipt']}"
        if obj.get("resolved_by"):
            extra += f" · resolved by {obj['resolved_by']}"
        entries.append(Entry(event.created_at, "event", f"Event {event.type} ({event.id})", extra))
    if events:
        deliveries = (
            await db.execute(
                select(WebhookDelivery, WebhookEndpoint.url)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(WebhookDelivery.event_id.in_([e.id for e in events]))
            )
        ).all()
        by_delivery = {d.id: (d, url) for d, url in deliveries}
        attempts: list[WebhookAttempt] = list(
            await db.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id.in_(list(by_delivery)))
                .order_by(WebhookAttempt.attempted_at)
            )
            if by_delivery
            else []
        )
        for attempt in attempts:
            delivery, url = by_delivery[attempt.delivery_id]
            answer = str(attempt.status_code) if attempt.status_code else (attempt.error or "—")
            entries.append(
                Entry(
                    attempt.attempted_at,
                    "webhook",
                    f"Webhook attempt → {url}: {answer}",
                    f"delivery {delivery.id} ({delivery.status}) · {attempt.duration_ms} ms",
                )
            )
        for delivery, url in by_delivery.values():
            if delivery.attempts == 0:
                entries.append(
                    Entry(
                        delivery.created_at,
                        "webhook",
                        f"Webhook owed to {url}: {delivery.status}",
                        f"delivery {delivery.id}",
                    )
                )
    if payment.check_attempts or payment.next_check_at or payment.resolved_by == "query":
        when = payment.finalized_at or payment.updated_at
        entries.append(
            Entry(
                when,
                "recovery",
                f"Recovery: {payment.check_attempts} status check(s)",
                f"resolved by {payment.resolved_by or '—'}"
                + (
                    f" · next check {payment.next_check_at:%H:%M:%S} UTC"
                    if payment.next_check_at
                    else ""
                ),
            )
        )
    for anomaly in await db.scalars(
        select(Anomaly).where(Anomaly.payment_id == payment.id).order_by(Anomaly.created_at)
    ):
        entries.append(
            Entry(anomaly.created_at, "anomaly", f"Anomaly: {anomaly.kind}", str(anomaly.detail))
        )
    for entry in await db.scalars(
        select(AuditEntry).where(AuditEntry.target == payment.id).order_by(AuditEntry.at)
    ):
        entries.append(Entry(entry.at, "audit", f"{entry.action} by {entry.actor}", entry.reason))
    if payment.finalized_at:
        entries.append(
            Entry(
                payment.finalized_at,
                "final",
                f"Final: {payment.status}"
                + (f" ({payment.failure_code})" if payment.failure_code else ""),
                payment.failure_message
                or (f"receipt {payment.receipt}" if payment.receipt else ""),
            )
        )
    order = {"request": 0, "provider": 1}
    return sorted(entries, key=lambda e: (e.at or payment.created_at, order.get(e.kind, 2)))


# ----- reconciliation --------------------------------------------------------------------------
async def reconciliation_runs(db: AsyncSession, limit: int = 20) -> list[dict[str, Any]]:
    runs = list(
        await db.scalars(
            select(ReconciliationRun).order_by(ReconciliationRun.created_at.desc()).limit(limit)
        )
    )
    if not runs:
        return []
    kinds = (
        await db.execute(
            select(ReconciliationItem.run_id, ReconciliationItem.kind, func.count())
            .where(ReconciliationItem.run_id.in_([r.id for r in runs]))
            .group_by(ReconciliationItem.run_id, ReconciliationItem.kind)
        )
    ).all()
    findings: dict[str, dict[str, int]] = defaultdict(dict)
    for run_id, kind, n in kinds:
        findings[run_id][kind] = int(n)
    return [{"run": r, "findings": findings.get(r.id, {})} for r in runs]
