"""The one idempotent path by which a payout or a refund changes state, with its event.

The same rule as payments (``lipwa.domain.states.decide_transition``): pending → unknown →
succeeded | failed, the first final report wins, a contradicting report on a final row is an
anomaly. The update is conditional on the status read, and the event (``payout.<status>`` /
``refund.<status>``) is written in the caller's transaction through ``record_event``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import utcnow
from lipwa.domain.states import PaymentStatus, Transition, decide_transition
from lipwa.providers.base import SendOutcome, SendResult
from lipwa.services import anomalies
from lipwa.services.transitions import record_event
from lipwa.store.tables import Payout, Refund

MoneyRow = Payout | Refund
MoneyModel = type[Payout] | type[Refund]
View = Callable[[Any], dict[str, Any]]

OPEN_STATUSES = (PaymentStatus.PENDING.value, PaymentStatus.UNKNOWN.value)
MONEY_STATUSES = frozenset(s.value for s in PaymentStatus)


@dataclass(frozen=True)
class MoneyChange:
    """What a provider (or the gateway) says a payout / refund became."""

    status: PaymentStatus
    source: str  # callback | query | send | expiry
    receipt: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    provider_code: str | None = None
    provider_ref: str | None = None
    next_check_at: datetime | None = None
    recipient_name: str | None = None  # payouts: the name M-Pesa shows for the payee


def kind_of(model: MoneyModel) -> str:
    return "payout" if model is Payout else "refund"


async def emit(session: AsyncSession, row: MoneyRow, type_: str, view: View) -> None:
    await record_event(
        session,
        merchant_id=row.merchant_id,
        mode=row.mode,
        type_=type_,
        resource_id=row.id,
        obj=view(row),
    )


async def transition(
    session: AsyncSession, model: MoneyModel, row_id: str, change: MoneyChange, view: View
) -> Transition:
    """Apply ``change`` inside the caller's transaction; retried if a writer raced us."""
    for _ in range(3):
        decision = await _once(session, model, row_id, change, view)
        if decision is not None:
            return decision
    return Transition.NOOP


async def _once(
    session: AsyncSession, model: MoneyModel, row_id: str, change: MoneyChange, view: View
) -> Transition | None:
    row: MoneyRow | None = await session.get(model, row_id, populate_existing=True)
    if row is None:
        raise LookupError(row_id)
    final = change.status in (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED)
    if row.status not in MONEY_STATUSES:  # awaiting_approval / cancelled: nothing was sent
        decision = Transition.ANOMALY if final else Transition.NOOP
    else:
        decision = decide_transition(PaymentStatus(row.status), change.status)
    if decision is Transition.ANOMALY:
        anomalies.record(
            session,
            row.merchant_id,
            row.id,
            f"{kind_of(model)}_contradicting_report",
            {
                "current_status": row.status,
                "reported_status": change.status.value,
                "source": change.source,
                "provider_code": change.provider_code,
                "receipt": change.receipt,
            },
        )
        return decision
    if decision is Transition.NOOP:
        return decision
    now = utcnow()
    values: dict[str, Any] = {
        "status": change.status.value,
        "updated_at": now,
        "provider_code": change.provider_code or row.provider_code,
    }
    if change.provider_ref and not row.provider_ref:
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
        if model is Payout and change.recipient_name:
            values["recipient_name"] = change.recipient_name
    else:
        values["next_check_at"] = change.next_check_at
    result = await session.execute(
        update(model)
        .where(model.id == row.id, model.status == row.status)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    await session.refresh(row)
    await emit(session, row, f"{kind_of(model)}.{row.status}", view)
    return decision


async def set_fields(session: AsyncSession, model: MoneyModel, row_id: str, **values: Any) -> int:
    """Plain bookkeeping (send_state, next_check_at, provider_ref): no state change, no event."""
    result = await session.execute(
        update(model)
        .where(model.id == row_id)
        .values(updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


_SEND_STATE = {"accepted": "sent", "rejected": "rejected", "ambiguous": "ambiguous"}


async def record_send(
    session: AsyncSession,
    model: MoneyModel,
    row_id: str,
    result: SendResult,
    *,
    next_check_at: datetime,
    view: View,
    resent: bool = False,
) -> None:
    """Store a provider's answer to a send inside the caller's transaction: ``send_state``,
    the provider's reference, and a failed (refused) or unknown (ambiguous) status.
    ``resent``: the recovery's one re-send, whose state stays ``resent`` unless refused."""
    state = _SEND_STATE[result.outcome.value]
    if resent and result.outcome is not SendOutcome.REJECTED:
        state = "resent"
    values: dict[str, Any] = {"send_state": state}
    row: MoneyRow | None = await session.get(model, row_id, populate_existing=True)
    assert row is not None
    if result.outcome is SendOutcome.ACCEPTED and result.provider_ref and row.provider_ref is None:
        values["provider_ref"] = result.provider_ref
    await set_fields(session, model, row_id, **values)
    if result.outcome is SendOutcome.REJECTED:
        change = MoneyChange(
            PaymentStatus.FAILED,
            source="send",
            failure_code=result.failure_code or "rejected_by_provider",
            failure_message=result.error_message,
            provider_code=result.error_code,
        )
        await transition(session, model, row_id, change, view)
    elif result.outcome is SendOutcome.AMBIGUOUS:
        change = MoneyChange(
            PaymentStatus.UNKNOWN,
            source="send",
            provider_code=result.error_code,
            next_check_at=next_check_at,
        )
        await transition(session, model, row_id, change, view)
