"""Recovery: settle open payments whose callback never came, by asking the provider.

``RecoveryService.check`` looks at one open payment (``pending`` or ``unknown``), decides by
the rules in ``lipwa.services.recovery_rules`` (schedule, expiry rule and not-sent rule are
written down there) and applies what it learns through ``transitions.apply`` — the same one
idempotent path callbacks use, so a query and a callback racing each other change the payment
once. M-Pesa is asked with STK Query (CheckoutRequestID), MoMo with GET request-to-pay
(X-Reference-Id, paced to 10/s per account). An STK push is never sent twice.

``sweep_callbacks`` applies inbound callbacks that were stored but never applied (the process
died in between).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import utcnow
from lipwa.domain.money import to_provider_units
from lipwa.domain.states import PaymentStatus
from lipwa.providers.base import ProviderReport, QueryFailure, SendOutcome, SendResult
from lipwa.services.accounts import callback_base
from lipwa.services.callbacks import CallbackService, change_from_report
from lipwa.services.circuit import CircuitBreaker, is_failure
from lipwa.services.flags import FlagCache, send_refusal
from lipwa.services.pacing import Pacer
from lipwa.services.providers import ProviderRegistry
from lipwa.services.recovery_rules import (
    Action,
    Facts,
    Schedule,
    Step,
    Verdict,
    first_step,
    judge,
)
from lipwa.services.transitions import OPEN_STATUSES, Change, apply
from lipwa.services.unconfirmed import due_callbacks
from lipwa.store.tables import InboundCallback, Payment, ProviderAccount

log = structlog.get_logger("lipwa.recovery")

CALLBACK_KINDS = ("stk", "momo")  # kinds whose row carries the payment id in its URL


@dataclass(frozen=True)
class CheckResult:
    """What one check did: ``action`` is a Step or Action value, or final / missing."""

    payment_id: str
    action: str
    status: str
    detail: str = ""


class RecoveryService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: ProviderRegistry,
        callbacks: CallbackService,
        public_url: str,
        schedule: Schedule | None = None,
        pacer: Pacer | None = None,
        circuits: CircuitBreaker | None = None,
        flags: FlagCache | None = None,
    ) -> None:
        self._sessions = sessions
        self._flags = flags
        self._registry = registry
        self._callbacks = callbacks
        self._public_url = public_url
        self.schedule = schedule or Schedule()
        self._pacer = pacer or Pacer(10)
        self._circuits = circuits

    # ----- one payment -------------------------------------------------------------------------
    async def check(self, payment_id: str, source: str = "worker") -> CheckResult:
        """Check one open payment now (``source`` says who asked: worker, refresh, recover)."""
        async with self._sessions() as session:
            payment = await session.get(Payment, payment_id, populate_existing=True)
            account = await session.get(ProviderAccount, payment.account_id) if payment else None
        if payment is None or account is None:
            return CheckResult(payment_id, "missing", "missing")
        if payment.status not in OPEN_STATUSES:
            return CheckResult(payment_id, "final", payment.status)
        if payment.channel != "prompt":  # only prompts are ours to chase
            return CheckResult(payment_id, "skipped", payment.status, "not a prompt payment")
        facts = Facts(
            provider=payment.provider,
            send_state=payment.send_state,
            provider_ref=payment.provider_ref,
            created_at=payment.created_at,
            attempts=payment.check_attempts,
        )
        now = utcnow()
        step = first_step(facts, self.schedule, now)
        log.info("recovery_check", payment_id=payment_id, source=source, step=step.value)
        if step is Step.WAIT_FOR_SEND:
            at = payment.created_at + timedelta(seconds=self.schedule.stale_send_s)
            await self._reschedule(payment_id, max(at, now), unknown=False)
            return await self._result(payment_id, step.value, "the send may still be in flight")
        if step is Step.MARK_AMBIGUOUS:
            await self._mark_ambiguous(payment_id)
            return await self._result(payment_id, step.value, "send died unanswered; not re-sent")
        if step is Step.PARK:
            await self._park(payment_id)
            return await self._result(payment_id, step.value, "nothing to ask the provider")
        if step is Step.RESEND:
            return await self._resend(payment, account, now)
        answer = await self._query(payment, account)
        verdict = judge(facts, answer, self.schedule, utcnow())
        await self._act(payment_id, answer, verdict)
        return await self._result(payment_id, verdict.action.value, verdict.reason)

    async def _query(
        self, payment: Payment, account: ProviderAccount
    ) -> ProviderReport | QueryFailure:
        ref = payment.provider_ref
        assert ref is not None
        try:
            if payment.provider == "mpesa":
                answer = await self._registry.mpesa(account).stk_query(ref)
            else:
                await self._pacer.wait(account.id)
                answer = await self._registry.momo(account).get_request_to_pay(ref)
        except Exception as exc:  # a bug must not stop the worker: ask again later
            log.exception("status_query_crashed", payment_id=payment.id)
            answer = QueryFailure("internal_error", type(exc).__name__)
        if self._circuits is not None:
            failed = isinstance(answer, QueryFailure)
            self._circuits.record(account.id, account.provider, failed=failed)
        if isinstance(answer, QueryFailure):
            log.warning(
                "status_query_failed",
                payment_id=payment.id,
                error_code=answer.error_code,
                http_status=answer.http_status,
            )
        return answer

    async def _act(
        self, payment_id: str, answer: ProviderReport | QueryFailure, verdict: Verdict
    ) -> None:
        if verdict.action is Action.APPLY:
            assert isinstance(answer, ProviderReport)
            change = change_from_report(answer, "query")
            if change is not None:
                async with self._sessions() as session, session.begin():
                    await apply(session, payment_id, change)
        elif verdict.action is Action.RETRY:
            assert verdict.at is not None
            await self._reschedule(payment_id, verdict.at, unknown=verdict.unknown)
        elif verdict.action is Action.EXPIRE:
            await self._expire(payment_id, answer)
        else:
            await self._park(payment_id)

    # ----- state changes -----------------------------------------------------------------------
    async def _reschedule(self, payment_id: str, at: datetime, *, unknown: bool) -> None:
        async with self._sessions() as session, session.begin():
            if unknown:
                await apply(
                    session,
                    payment_id,
                    Change(PaymentStatus.UNKNOWN, source="query", next_check_at=at),
                )
            await _set_next_check(session, payment_id, at)

    async def _park(self, payment_id: str) -> None:
        """Unknown, and no more automatic checks: a callback, reconciliation or the
        merchant's refresh settles it."""
        async with self._sessions() as session, session.begin():
            await apply(session, payment_id, Change(PaymentStatus.UNKNOWN, source="query"))
            await _set_next_check(session, payment_id, None)

    async def _mark_ambiguous(self, payment_id: str) -> None:
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(Payment)
                .where(Payment.id == payment_id, Payment.send_state == "not_sent")
                .values(send_state="ambiguous", updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return  # the API process recorded the answer after all
            await apply(session, payment_id, Change(PaymentStatus.UNKNOWN, source="send"))
            await _set_next_check(session, payment_id, None)

    async def _expire(self, payment_id: str, answer: ProviderReport | QueryFailure) -> None:
        code = answer.raw_code if isinstance(answer, ProviderReport) else answer.error_code
        async with self._sessions() as session, session.begin():
            await apply(
                session,
                payment_id,
                Change(
                    PaymentStatus.FAILED,
                    source="expiry",
                    failure_code="expired",
                    failure_message="No final answer from the provider before the payment expired",
                    provider_code=code,
                ),
            )

    # ----- MoMo: the request-to-pay that may never have left ----------------------------------
    async def _resend(
        self, payment: Payment, account: ProviderAccount, now: datetime
    ) -> CheckResult:
        """Send the request-to-pay again with the same X-Reference-Id, once. Held, as any
        send, while a kill switch keeps its path off or its account is disabled."""
        async with self._sessions() as session:
            refusal = await send_refusal(session, self._flags, payment.merchant_id, account)
        if refusal is not None:
            log.info("resend_held", payment_id=payment.id, code=refusal.code)
            await self._reschedule(payment.id, now + self.schedule.delay(1), unknown=False)
            return await self._result(payment.id, "held", refusal.message)
        async with self._sessions() as session, session.begin():
            claimed = await session.execute(
                update(Payment)
                .where(Payment.id == payment.id, Payment.send_state == "not_sent")
                .values(send_state="ambiguous", updated_at=now)
                .execution_options(synchronize_session=False)
            )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return await self._result(payment.id, "raced", "the send was recorded meanwhile")
        base = callback_base(self._public_url, account)
        try:
            result = await self._registry.momo(account).request_to_pay(
                reference_id=payment.provider_request_id,
                amount=to_provider_units(payment.amount),
                currency=payment.currency,
                msisdn=payment.phone,
                external_id=payment.id,
                payer_message=payment.provider_description,
                payee_note=payment.provider_reference,
                callback_url=f"{base}/momo/{payment.id}",
            )
        except Exception as exc:
            log.exception("resend_crashed", payment_id=payment.id)
            result = SendResult(SendOutcome.AMBIGUOUS, error_message=type(exc).__name__)
        if self._circuits is not None:
            self._circuits.record(account.id, account.provider, failed=is_failure(result))
        await self._record_resend(payment.id, result, now + self.schedule.delay(1))
        log.info("momo_resent", payment_id=payment.id, outcome=result.outcome.value)
        return await self._result(payment.id, Step.RESEND.value, result.outcome.value)

    async def _record_resend(self, payment_id: str, result: SendResult, at: datetime) -> None:
        async with self._sessions() as session, session.begin():
            if result.outcome is SendOutcome.ACCEPTED:
                await _set_send_state(session, payment_id, "sent")
                await _set_next_check(session, payment_id, at)
            elif result.outcome is SendOutcome.REJECTED and result.transient:
                # Nothing left this process: it stays "not sent" and may be sent once more.
                await _set_send_state(session, payment_id, "not_sent")
                await _set_next_check(session, payment_id, at)
            elif result.outcome is SendOutcome.REJECTED:
                await _set_send_state(session, payment_id, "rejected")
                await apply(
                    session,
                    payment_id,
                    Change(
                        PaymentStatus.FAILED,
                        source="send",
                        failure_code=result.failure_code or "rejected_by_provider",
                        failure_message=result.error_message,
                        provider_code=result.error_code,
                    ),
                )
            else:  # ambiguous: the GET will tell
                await apply(
                    session,
                    payment_id,
                    Change(
                        PaymentStatus.UNKNOWN,
                        source="send",
                        provider_code=result.error_code,
                        next_check_at=at,
                    ),
                )
                await _set_next_check(session, payment_id, at)

    # ----- callbacks stored but never applied --------------------------------------------------
    async def sweep_callbacks(self, older_than_s: float = 5.0, limit: int = 100) -> int:
        """Apply callbacks the process died before applying; returns how many it handled.

        The stored row keeps only a 4-character hint of the URL token, so the token comes from
        the account of the payment named in the URL, and the hint must match it."""
        handled = 0
        ids = await due_callbacks(self._sessions, CALLBACK_KINDS, older_than_s, limit)
        for callback_id in ids:
            async with self._sessions() as session:
                row = await session.get(InboundCallback, callback_id)
                token = await _token_for(session, row) if row is not None else None
            if row is None:
                continue
            if token is None:
                await self._callbacks.mark_unprocessable(
                    callback_id, "no payment with an account matching this callback URL"
                )
            else:
                try:
                    outcome = await self._callbacks.process(callback_id, token)
                except Exception:  # stays unprocessed: the next sweep tries again
                    log.exception("callback_sweep_failed", callback_id=callback_id)
                    continue
                log.info("callback_swept", callback_id=callback_id, outcome=outcome)
            handled += 1
        return handled

    # ----- helpers -----------------------------------------------------------------------------
    async def _result(self, payment_id: str, action: str, detail: str) -> CheckResult:
        async with self._sessions() as session:
            status = await session.scalar(select(Payment.status).where(Payment.id == payment_id))
        return CheckResult(payment_id, action, status or "missing", detail)


async def _set_next_check(session: AsyncSession, payment_id: str, at: datetime | None) -> None:
    await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status.in_(OPEN_STATUSES))
        .values(next_check_at=at)
        .execution_options(synchronize_session=False)
    )


async def _set_send_state(session: AsyncSession, payment_id: str, state: str) -> None:
    values: dict[str, Any] = {"send_state": state, "updated_at": utcnow()}
    await session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def _token_for(session: AsyncSession, row: InboundCallback) -> str | None:
    """The callback token of the account the URL's payment belongs to, if the hint agrees."""
    if not row.payment_id:
        return None
    payment = await session.get(Payment, row.payment_id)
    account = await session.get(ProviderAccount, payment.account_id) if payment else None
    if account is None:
        return None
    parts = row.path.split("/")  # "", "callbacks", "<hint>…", kind, payment id
    hint = parts[2].rstrip("…") if len(parts) > 2 else ""
    if not hint or not account.callback_token.startswith(hint):
        return None
    return account.callback_token
