"""Recovery of payouts and refunds whose result never came (or whose process died).

Open rows (``pending``/``unknown``) carry ``next_check_at``; the worker claims due ones and
``check_payout`` / ``check_refund`` ask the provider, on the payments' schedule
(``lipwa.services.recovery_rules.Schedule``):

- A row still ``not_sent`` younger than ``stale_send_s`` may be mid-send: wait.
- M-Pesa payout: a Transaction Status query by OriginalConversationID (the payout's own
  OriginatorConversationID), or by receipt when known. The answer comes asynchronously to
  ``/callbacks/<token>/status/<payout id>``; if it says Daraja has no such transaction
  (``R000002``) the payout is marked ``not_found`` and the next check sends it, once, with the
  *same* OriginatorConversationID (Daraja refuses a repeat, so it can never pay twice).
- M-Pesa refund: the reversal is repeated towards ``/reversal-check/<refund id>``. Daraja
  reverses a transaction at most once, so the repeat either reverses it (the first never
  arrived or failed) or answers ``R000001`` already reversed (the first went through).
  Decision: this is the status check for reversals, because Transaction Status cannot find a
  reversal by the only id we hold before its result arrives (its ConversationID).
- MoMo: GET the transfer / refund by our X-Reference-Id. 404 means it never arrived: it is
  sent again, once, with the same reference (MoMo answers 409 if it did arrive after all).

Every send made here (a re-send, a reversal's repeat) is held, as an approval's is, while a
kill switch is thrown or the account is disabled: the row stays open and is checked again. A
re-send refused as transient (throttled, unreachable, no token) sent nothing: the row keeps its
send state and the next check sends it again; it is never failed for it.

Nothing here holds a database session across a provider call.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import utcnow
from lipwa.domain.states import PaymentStatus
from lipwa.providers.base import (
    ProviderReport,
    QueryFailure,
    ReportState,
    SendOutcome,
    SendResult,
)
from lipwa.services.accounts import callback_base
from lipwa.services.flags import FlagCache, send_refusal
from lipwa.services.money_callbacks import change_of
from lipwa.services.money_states import (
    OPEN_STATUSES,
    MoneyChange,
    MoneyModel,
    record_send,
    set_fields,
    transition,
)
from lipwa.services.money_views import payout_view, refund_view
from lipwa.services.payouts import PayoutService
from lipwa.services.providers import ProviderRegistry
from lipwa.services.recovery_rules import Schedule
from lipwa.services.refunds import RefundService
from lipwa.store.tables import Payment, Payout, ProviderAccount, Refund

log = structlog.get_logger("lipwa.money_recovery")

# Send states in which no answer of the provider was ever recorded: the merchant sees "unknown".
UNANSWERED = ("not_sent", "ambiguous", "not_found")


class MoneyRecovery:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: ProviderRegistry,
        public_url: str,
        payouts: PayoutService,
        refunds: RefundService,
        schedule: Schedule | None = None,
        flags: FlagCache | None = None,
    ) -> None:
        self._sessions = sessions
        self._flags = flags
        self._registry = registry
        self._public_url = public_url
        self._payouts = payouts
        self._refunds = refunds
        self.schedule = schedule or Schedule()

    # ----- claiming due rows -------------------------------------------------------------------
    async def claim_due(
        self, model: MoneyModel, limit: int, lease_s: float, skip_locked: bool
    ) -> list[str]:
        """Claim up to ``limit`` due open rows: push ``next_check_at`` by a lease, count it."""
        now = utcnow()
        query = (
            select(model.id)
            .where(model.status.in_(OPEN_STATUSES), model.next_check_at <= now)
            .order_by(model.next_check_at)
            .limit(limit)
        )
        if skip_locked:
            query = query.with_for_update(skip_locked=True)
        async with self._sessions() as session, session.begin():
            ids = list(await session.scalars(query))
            if ids:
                await session.execute(
                    update(model)
                    .where(model.id.in_(ids))
                    .values(
                        next_check_at=now + timedelta(seconds=lease_s),
                        check_attempts=model.check_attempts + 1,
                    )
                    .execution_options(synchronize_session=False)
                )
        return ids

    # ----- payouts -----------------------------------------------------------------------------
    async def check_payout(self, payout_id: str, *, asked: bool = False) -> str:
        """One check of an open payout. ``asked``: a merchant's "check now", which also asks
        about a payout parked past the horizon (its credentials fixed since, say)."""
        async with self._sessions() as session:
            payout = await session.get(Payout, payout_id, populate_existing=True)
            account = await session.get(ProviderAccount, payout.account_id) if payout else None
        if payout is None or account is None:
            return "missing"
        if payout.status not in OPEN_STATUSES:
            return "final"
        step = await self._early_step(Payout, payout, asked)
        if step is not None:
            return step
        if account.provider == "momo":
            return await self._momo_payout(account, payout)
        if payout.send_state == "not_found":
            return await self._resend_payout(account, payout)
        base = callback_base(self._public_url, account)
        result = await self._registry.mpesa(account).transaction_status(
            transaction_id=payout.receipt,
            original_conversation_id=payout.provider_request_id,
            result_url=f"{base}/status/{payout.id}",
            queue_timeout_url=f"{base}/status/{payout.id}",
            remarks="Payout status",
        )
        log.info("payout_status_asked", payout_id=payout.id, outcome=result.outcome.value)
        # Unanswered since the process died: the merchant should see "unknown" meanwhile.
        await self._again(Payout, payout, unknown=payout.send_state in UNANSWERED)
        return "status_query"

    async def _momo_payout(self, account: ProviderAccount, payout: Payout) -> str:
        answer = await self._registry.momo(account).get_transfer(payout.provider_request_id)
        missing = isinstance(answer, ProviderReport) and answer.state is ReportState.NOT_FOUND
        if missing and payout.send_state != "resent":
            return await self._resend_payout(account, payout)
        return await self._apply_answer(Payout, payout, answer)

    async def _resend_payout(self, account: ProviderAccount, payout: Payout) -> str:
        """The one re-send, with the payout's own provider request id."""
        if await self._held(Payout, payout, account):
            return "held"
        if not await self._claim_send(Payout, payout.id, payout.send_state):
            return "raced"
        result = await self._payouts.send(account, payout)
        await self._record_resend(Payout, payout, result)
        log.info("payout_resent", payout_id=payout.id, outcome=result.outcome.value)
        return "resend"

    # ----- refunds -----------------------------------------------------------------------------
    async def check_refund(self, refund_id: str, *, asked: bool = False) -> str:
        """One check of an open refund; ``asked`` as for ``check_payout``. An M-Pesa refund's
        check is a repeat of its reversal (Daraja reverses a transaction once)."""
        async with self._sessions() as session:
            refund = await session.get(Refund, refund_id, populate_existing=True)
            payment = await session.get(Payment, refund.payment_id) if refund else None
            account = await session.get(ProviderAccount, refund.account_id) if refund else None
        if refund is None or payment is None or account is None:
            return "missing"
        if refund.status not in OPEN_STATUSES:
            return "final"
        step = await self._early_step(Refund, refund, asked)
        if step is not None:
            return step
        if account.provider == "mpesa":
            if await self._held(Refund, refund, account):  # the repeat may be the reversal
                return "held"
            result = await self._refunds.send(account, payment, refund, kind="reversal-check")
            log.info("reversal_rechecked", refund_id=refund.id, outcome=result.outcome.value)
            await self._again(Refund, refund, unknown=refund.send_state in UNANSWERED)
            return "reversal_check"
        answer = await self._registry.momo(account).get_refund(refund.provider_request_id)
        if (
            isinstance(answer, ProviderReport)
            and answer.state is ReportState.NOT_FOUND
            and refund.send_state != "resent"
        ):
            if await self._held(Refund, refund, account):
                return "held"
            if not await self._claim_send(Refund, refund.id, refund.send_state):
                return "raced"
            result = await self._refunds.send(account, payment, refund)
            await self._record_resend(Refund, refund, result)
            log.info("refund_resent", refund_id=refund.id, outcome=result.outcome.value)
            return "resend"
        return await self._apply_answer(Refund, refund, answer)

    # ----- shared steps ------------------------------------------------------------------------
    async def _early_step(
        self, model: MoneyModel, row: Payout | Refund, asked: bool = False
    ) -> str | None:
        """Wait for a send that may be in flight; park a row past the horizon (unless a
        merchant asked: then it is checked once more, and parked again at the next round)."""
        now = utcnow()
        sent_from = _sent_from(row)
        if not asked and now >= sent_from + timedelta(seconds=self.schedule.horizon_s):
            await self._park(model, row)
            return "park"
        stale_at = sent_from + timedelta(seconds=self.schedule.stale_send_s)
        if row.send_state == "not_sent" and now < stale_at:
            async with self._sessions() as session, session.begin():
                await _next_check(session, model, row.id, stale_at)
            return "wait_for_send"
        return None

    async def _held(
        self, model: MoneyModel, row: Payout | Refund, account: ProviderAccount
    ) -> bool:
        """Whether a send must wait, as approval's does: a kill switch thrown or the account
        disabled keeps the row open, checked again later (and parked past the horizon)."""
        async with self._sessions() as session:
            refusal = await send_refusal(session, self._flags, row.merchant_id, account)
        if refusal is None:
            return False
        log.info("send_held", subject_id=row.id, code=refusal.code)
        await self._again(model, row, unknown=row.send_state in UNANSWERED)
        return True

    async def _apply_answer(
        self, model: MoneyModel, row: Payout | Refund, answer: ProviderReport | QueryFailure
    ) -> str:
        if isinstance(answer, ProviderReport):
            change = change_of(answer, "query")
            if change is not None:
                async with self._sessions() as session, session.begin():
                    await transition(session, model, row.id, change, _view(model))
                return "applied"
        await self._again(model, row, unknown=False)
        return "retry"

    async def _again(self, model: MoneyModel, row: Payout | Refund, *, unknown: bool) -> None:
        """Schedule the next check (back-off); ``unknown`` also when overdue."""
        now = utcnow()
        at = now + self.schedule.delay(row.check_attempts)
        overdue = self.schedule.overdue_after_s.get(row.provider, 600.0)
        unknown = unknown or now - _sent_from(row) > timedelta(seconds=overdue)
        async with self._sessions() as session, session.begin():
            if unknown:
                change = MoneyChange(PaymentStatus.UNKNOWN, source="query", next_check_at=at)
                await transition(session, model, row.id, change, _view(model))
            await _next_check(session, model, row.id, at)

    async def _park(self, model: MoneyModel, row: Payout | Refund) -> None:
        """Past the horizon: unknown, no more automatic checks (a late callback or the
        merchant's refresh, ``asked``, settles it)."""
        async with self._sessions() as session, session.begin():
            change = MoneyChange(PaymentStatus.UNKNOWN, source="query")
            await transition(session, model, row.id, change, _view(model))
            await _next_check(session, model, row.id, None)

    async def _claim_send(self, model: MoneyModel, row_id: str, seen: str) -> bool:
        """Take the one re-send: only the claimer of ``seen`` → ``resent`` sends."""
        async with self._sessions() as session, session.begin():
            won = await session.execute(
                update(model)
                .where(model.id == row_id, model.send_state == seen)
                .values(send_state="resent", updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        return bool(won.rowcount == 1)  # type: ignore[attr-defined]

    async def _record_resend(
        self, model: MoneyModel, row: Payout | Refund, result: SendResult
    ) -> None:
        """Store the re-send's answer. A transient refusal (throttled, unreachable, no token)
        sent nothing and says nothing of the first send, which may still land: the row stays
        open in the send state it had, to be checked and re-sent later, never failed."""
        if result.outcome is SendOutcome.REJECTED and result.transient:
            async with self._sessions() as session, session.begin():
                await set_fields(session, model, row.id, send_state=row.send_state)
            await self._again(model, row, unknown=row.send_state in UNANSWERED)
            return
        async with self._sessions() as session, session.begin():
            await record_send(
                session,
                model,
                row.id,
                result,
                next_check_at=utcnow() + self.schedule.delay(1),
                view=_view(model),
                resent=True,
            )
            if result.outcome is not SendOutcome.REJECTED:
                at = utcnow() + self.schedule.delay(max(row.check_attempts, 1))
                await _next_check(session, model, row.id, at)


async def _next_check(
    session: AsyncSession, model: MoneyModel, row_id: str, at: datetime | None
) -> None:
    await session.execute(
        update(model)
        .where(model.id == row_id, model.status.in_(OPEN_STATUSES))
        .values(next_check_at=at)
        .execution_options(synchronize_session=False)
    )


def _sent_from(row: Payout | Refund) -> datetime:
    """When the row could first be sent: a payout waiting for approval is not sent before."""
    return (row.approved_at if isinstance(row, Payout) else None) or row.created_at


def _view(model: MoneyModel) -> Any:
    return payout_view if model is Payout else refund_view
