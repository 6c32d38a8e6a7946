"""The one idempotent path by which a payment changes state, with its event (outbox).

Callbacks, status queries, send results and expiry all come through ``apply``. The update is
conditional on the current status, so two reports racing each other can never both win, and
the event is written in the same transaction as the change it reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa import metrics
from lipwa.clock import isoformat, utcnow
from lipwa.domain.ids import new_id
from lipwa.domain.money import format_amount
from lipwa.domain.states import PaymentStatus, Transition, decide_transition
from lipwa.services import anomalies
from lipwa.services.fees import success_fees
from lipwa.services.receipt_twins import note_c2b_twin
from lipwa.store.tables import Event, Payment, PaymentLink, WebhookDelivery, WebhookEndpoint

OPEN_STATUSES = (PaymentStatus.PENDING.value, PaymentStatus.UNKNOWN.value)


def payment_view(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "object": "payment",
        "status": payment.status,
        "amount": format_amount(payment.amount, payment.currency),
        "currency": payment.currency,
        "phone": payment.phone,
        "network": payment.network,
        "provider": payment.provider,
        "account_id": payment.account_id,
        "channel": payment.channel,
        "reference": payment.reference,
        "description": payment.description,
        "provider_reference": payment.provider_reference,
        "provider_description": payment.provider_description,
        "metadata": payment.meta,
        "receipt": payment.receipt,
        "failure_code": payment.failure_code,
        "failure_message": payment.failure_message,
        "provider_code": payment.provider_code,
        "resolved_by": payment.resolved_by,
        "mode": payment.mode,
        "livemode": payment.mode == "live",
        "created_at": isoformat(payment.created_at),
        "updated_at": isoformat(payment.updated_at),
        "finalized_at": isoformat(payment.finalized_at),
    }


async def record_event(
    session: AsyncSession,
    *,
    merchant_id: str,
    mode: str,
    type_: str,
    resource_id: str,
    obj: dict[str, Any],
) -> Event:
    """Write an event and one delivery per subscribed webhook endpoint (the outbox), inside
    the caller's transaction: the event exists exactly when the change it reports does."""
    now = utcnow()
    event = Event(
        id=new_id("evt"),
        merchant_id=merchant_id,
        mode=mode,
        type=type_,
        resource_id=resource_id,
        data={"object": obj},
        created_at=now,
    )
    session.add(event)
    endpoints = await session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.merchant_id == merchant_id,
            WebhookEndpoint.mode == mode,
            WebhookEndpoint.status == "enabled",
        )
    )
    for endpoint in endpoints:
        if "*" in endpoint.event_types or type_ in endpoint.event_types:
            session.add(
                WebhookDelivery(
                    id=new_id("whd"),
                    merchant_id=merchant_id,
                    event_id=event.id,
                    endpoint_id=endpoint.id,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    return event


async def add_event(session: AsyncSession, payment: Payment, type_: str) -> Event:
    """The event of a payment's state change."""
    return await record_event(
        session,
        merchant_id=payment.merchant_id,
        mode=payment.mode,
        type_=type_,
        resource_id=payment.id,
        obj=payment_view(payment),
    )


@dataclass(frozen=True)
class Change:
    """What a provider says the payment became (already normalised)."""

    status: PaymentStatus
    source: str  # callback | query | send | expiry
    receipt: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    provider_code: str | None = None
    provider_ref: str | None = None
    next_check_at: datetime | None = None


async def _fill_receipt(session: AsyncSession, payment: Payment, change: Change) -> None:
    """A status query proves success without a receipt (Daraja's STK query has none); a later
    callback with the same outcome brings it. Not a state change, so no event."""
    if (
        change.status is PaymentStatus.SUCCEEDED
        and payment.status == PaymentStatus.SUCCEEDED.value
        and payment.receipt is None
        and change.receipt
    ):
        filled = await session.execute(
            update(Payment)
            .where(Payment.id == payment.id, Payment.receipt.is_(None))
            .values(receipt=change.receipt, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if filled.rowcount:  # type: ignore[attr-defined]
            await note_c2b_twin(session, payment, change.receipt)


async def _close_single_use_link(session: AsyncSession, payment: Payment) -> None:
    """A single-use link is ``used`` from its payment's success on, whoever learns of it (the
    callback, a status check, reconciliation), not only when the payer's page does."""
    if payment.link_id is None:
        return
    await session.execute(
        update(PaymentLink)
        .where(
            PaymentLink.id == payment.link_id,
            PaymentLink.single_use.is_(True),
            PaymentLink.status == "active",
        )
        .values(status="used")
        .execution_options(synchronize_session=False)
    )


async def apply(
    session: AsyncSession, payment_id: str, change: Change, *, loaded: Payment | None = None
) -> Transition:
    """Apply ``change`` to the payment inside the caller's transaction. ``loaded``: the
    payment as this transaction just read it, which spares the first read (a stale one only
    costs a retry: the update is conditional on the status)."""
    for _ in range(3):
        decision = await _apply_once(session, payment_id, change, loaded)
        if decision is not None:
            return decision
        loaded = None
    return Transition.NOOP


async def _apply_once(
    session: AsyncSession, payment_id: str, change: Change, loaded: Payment | None
) -> Transition | None:
    """One attempt; None when a concurrent writer changed the row between read and write."""
    payment = loaded or await session.get(Payment, payment_id, populate_existing=True)
    if payment is None:
        raise LookupError(payment_id)
    current = PaymentStatus(payment.status)
    decision = decide_transition(
        current,
        change.status,
        current_failure=payment.failure_code,
        reported_failure=change.failure_code,
    )
    if decision is Transition.ANOMALY:
        anomalies.record(
            session,
            payment.merchant_id,
            payment.id,
            "contradicting_report",
            {
                "current_status": payment.status,
                "reported_status": change.status.value,
                "source": change.source,
                "provider_code": change.provider_code,
                "receipt": change.receipt,
            },
        )
        return decision
    if decision is Transition.NOOP:
        await _fill_receipt(session, payment, change)
        return decision
    now = utcnow()
    final = change.status in (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED)
    values: dict[str, Any] = {
        "status": change.status.value,
        "updated_at": now,
        "provider_code": change.provider_code or payment.provider_code,
    }
    if change.provider_ref and not payment.provider_ref:
        values["provider_ref"] = change.provider_ref
    if final:
        values.update(
            receipt=change.receipt,
            failure_code=change.failure_code,
            failure_message=change.failure_message,
            resolved_by=change.source,
            finalized_at=now,
            next_check_at=None,
        )
        if change.status is PaymentStatus.SUCCEEDED:  # fees fixed with the success (estimates)
            values.update(await success_fees(session, payment))
    else:
        values["next_check_at"] = change.next_check_at
    # Conditional on the status we read: a concurrent writer makes this a no-op.
    updated = (
        await session.execute(
            update(Payment)
            .where(Payment.id == payment.id, Payment.status == payment.status)
            .values(**values)
            .returning(Payment)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
    ).scalar_one_or_none()
    if updated is None:
        return None
    payment = updated
    if payment.status == PaymentStatus.SUCCEEDED.value:
        await note_c2b_twin(session, payment, payment.receipt)
        await _close_single_use_link(session, payment)
    await add_event(session, payment, f"payment.{payment.status}")
    metrics.payment_transition(payment.provider, payment.status)
    return decision
