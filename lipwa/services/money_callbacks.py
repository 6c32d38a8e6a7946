"""Result callbacks of payouts and refunds: stored raw first (``CallbackService.receive``), then
applied once through ``money_states.transition``.

URL kinds (``/callbacks/<account token>/<kind>/<payout or refund id>``):

- ``b2c`` (ResultURL of a B2C), ``b2c-timeout`` (its QueueTimeOutURL: unknown, then query),
  ``status`` (ResultURL of a transaction status query about a payout), ``momo-transfer``;
- ``reversal``, ``reversal-timeout``, ``reversal-check`` (recovery's confirming repeat of a
  reversal, where ``R000001`` "already reversed" means the first one went through; only a
  success settles the refund, any other answer leaves it open as an anomaly),
  ``momo-refund``.

Trust is as for payments: the token and id in the URL, and a body that agrees with what was
sent (OriginatorConversationID, externalId, amount). Anything else is recorded, changes nothing.
A final MoMo report about an open payout or refund is confirmed with MTN first, and MTN's answer
is applied (``lipwa.services.callbacks`` explains why).
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import utcnow
from lipwa.domain.states import PaymentStatus
from lipwa.providers.base import ProviderReport, ReportState
from lipwa.providers.momo.callbacks import parse_momo_callback
from lipwa.providers.mpesa import results
from lipwa.services import anomalies
from lipwa.services.callback_confirm import ProviderConfirmer
from lipwa.services.money_states import (
    OPEN_STATUSES,
    MoneyChange,
    MoneyModel,
    MoneyRow,
    set_fields,
    transition,
)
from lipwa.services.money_views import payout_view, refund_view
from lipwa.services.unconfirmed import due_callbacks, note_unconfirmed
from lipwa.store.tables import InboundCallback, Payout, ProviderAccount, Refund

log = structlog.get_logger("lipwa.money_callbacks")

PAYOUT_KINDS = ("b2c", "b2c-timeout", "status", "momo-transfer")
REFUND_KINDS = ("reversal", "reversal-timeout", "reversal-check", "momo-refund")
KINDS = PAYOUT_KINDS + REFUND_KINDS
MOMO_KINDS = ("momo-transfer", "momo-refund")
ALREADY_REFUNDED = "already_refunded"
UNCONFIRMED_REVERSAL = "reversal_unconfirmed"
# After a queue-timeout notice or a "no such transaction" answer, look again this soon.
SOON = timedelta(seconds=1)

Applied = tuple[str, str | None]  # outcome, detail
FINAL_REPORTS = (ReportState.SUCCEEDED, ReportState.FAILED)


class MoneyCallbacks:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        confirmer: ProviderConfirmer | None = None,
    ) -> None:
        self._sessions = sessions
        self._confirmer = confirmer

    async def process(self, callback_id: int, token: str) -> str:
        """Apply one stored callback; returns its outcome. Safe to run more than once."""
        confirmed = None
        if self._confirmer is not None:
            to_confirm = await self._to_confirm(callback_id, token)
            if to_confirm is not None:
                confirmed = await self._confirmer.status(*to_confirm)
                if confirmed is None:
                    return await note_unconfirmed(self._sessions, callback_id)
        async with self._sessions() as session, session.begin():
            row = await session.get(InboundCallback, callback_id)
            if row is None:
                return "missing"
            if row.processed_at is not None:
                return row.outcome or "noop"
            account = await session.scalar(
                select(ProviderAccount).where(ProviderAccount.callback_token == token)
            )
            outcome, detail = await self._apply(session, row, account, confirmed)
            row.outcome = outcome
            row.detail = detail[:300] if detail else None
            row.account_id = account.id if account else None
            row.processed_at = utcnow()
        log.info(
            "money_callback_processed", callback_id=callback_id, kind=row.kind, outcome=outcome
        )
        return outcome

    async def _to_confirm(
        self, callback_id: int, token: str
    ) -> tuple[ProviderAccount, str, str] | None:
        """(account, kind, X-Reference-Id) when this is a final MoMo report about an open
        payout or refund, which MTN must confirm first; None otherwise (reads only)."""
        async with self._sessions() as session:
            row = await session.get(InboundCallback, callback_id)
            if row is None or row.processed_at is not None or row.kind not in MOMO_KINDS:
                return None
            account = await session.scalar(
                select(ProviderAccount).where(ProviderAccount.callback_token == token)
            )
            if account is None or account.provider != "momo" or not row.payment_id:
                return None
            model: MoneyModel = Payout if row.kind in PAYOUT_KINDS else Refund
            target: MoneyRow | None = await session.get(model, row.payment_id)
            if target is None or target.account_id != account.id:
                return None
            if target.status not in OPEN_STATUSES:
                return None
        try:
            report = parse_momo_callback(json.loads(row.body) if row.body else None)
        except ValueError:
            return None
        if report is None or report.state not in FINAL_REPORTS:
            return None
        if report.external_id is not None and report.external_id != target.id:
            return None
        return account, row.kind, target.provider_request_id

    async def _apply(
        self,
        session: AsyncSession,
        row: InboundCallback,
        account: ProviderAccount | None,
        confirmed: ProviderReport | None = None,
    ) -> Applied:
        if account is None:
            return "forged", "no account has this callback token"
        expected = "momo" if row.kind in MOMO_KINDS else "mpesa"
        if row.kind not in KINDS or account.provider != expected:
            return "forged", "callback kind does not match the account's provider"
        model: MoneyModel = Payout if row.kind in PAYOUT_KINDS else Refund
        target: MoneyRow | None = (
            await session.get(model, row.payment_id) if row.payment_id else None
        )
        if target is None or target.account_id != account.id:
            return "unmatched", f"no {model.__tablename__[:-1]} {row.payment_id} on this account"
        try:
            payload: Any = json.loads(row.body) if row.body else None
        except ValueError:
            payload = None
        if row.kind in MOMO_KINDS:
            return await self._momo(session, model, target, payload, confirmed)
        envelope = results.parse_result(payload)
        if row.kind in ("b2c-timeout", "reversal-timeout"):
            code = envelope.code if envelope else None
            return await self._check_soon(session, model, target, code, "queue timeout")
        if envelope is None:
            return "invalid", "body is not a Daraja Result envelope"
        if row.kind == "status":
            assert isinstance(target, Payout)
            return await self._status(session, target, envelope)
        if row.kind == "b2c":
            assert isinstance(target, Payout)
            ocid = envelope.originator_conversation_id
            if ocid and ocid != target.provider_request_id:
                return await self._anomaly(session, target, "OriginatorConversationID differs")
            if envelope.code == results.DUPLICATE_DETECTED_CODE:
                return await self._duplicate_detected(session, model, target)
            report = results.b2c_report(envelope)
            name = results.recipient_name(envelope)
            return await self._report(session, model, target, report, "callback", name)
        confirming = row.kind == "reversal-check"  # recovery's repeat: its answer is a query's
        if envelope.code == results.DUPLICATE_DETECTED_CODE and not confirming:
            return await self._duplicate_detected(session, model, target)
        report = results.reversal_report(envelope)
        if envelope.code == results.ALREADY_REVERSED_CODE:
            report = _already_reversed(report, confirming=confirming)
        if confirming and report.state is not ReportState.SUCCEEDED:
            return await self._unconfirmed(session, target, report)
        return await self._report(
            session, model, target, report, "query" if confirming else "callback"
        )

    # ----- by kind ------------------------------------------------------------------------------
    async def _momo(
        self,
        session: AsyncSession,
        model: MoneyModel,
        target: MoneyRow,
        payload: Any,
        confirmed: ProviderReport | None,
    ) -> Applied:
        report = parse_momo_callback(payload)
        if report is None:
            return "invalid", "body is not a MoMo result"
        if report.external_id is not None and report.external_id != target.id:
            return await self._anomaly(session, target, "externalId differs")
        if confirmed is not None:
            said = f"MTN reports {confirmed.state.value}, the callback {report.state.value}"
            if confirmed.state not in FINAL_REPORTS:
                return await self._anomaly(session, target, said, "unconfirmed_callback")
            if confirmed.state is not report.state:
                detail = {"detail": said}
                anomalies.record(
                    session, target.merchant_id, target.id, "callback_contradicted", detail
                )
            report = confirmed  # what MTN says, not what the callback claimed
        return await self._report(session, model, target, report, "callback")

    async def _check_soon(
        self,
        session: AsyncSession,
        model: MoneyModel,
        target: MoneyRow,
        code: str | None,
        why: str,
    ) -> Applied:
        """A notice that says nothing final (the request timed out in Daraja's queue, or was
        seen as a duplicate): unknown, and checked again at once. Once recovery has checked it
        (a refund's re-check is itself a reversal, with these same URLs), its back-off stands:
        a re-check's own notice must not set off the next re-check a second later, again and
        again, while Daraja is shedding load."""
        first = target.check_attempts == 0
        at = utcnow() + SOON if first else target.next_check_at
        change = MoneyChange(
            PaymentStatus.UNKNOWN, source="callback", provider_code=code, next_check_at=at
        )
        decision = await transition(session, model, target.id, change, _view(model))
        if first and target.status in OPEN_STATUSES:
            await set_fields(session, model, target.id, next_check_at=at)
        return decision.value, f"{why}: to be checked"

    async def _duplicate_detected(
        self, session: AsyncSession, model: MoneyModel, target: MoneyRow
    ) -> Applied:
        """ResultCode 15 answers a repeat M-Pesa saw, not the request: the first one may have
        moved the money, so only a status check can tell. Failing it could make a merchant
        pay twice."""
        code = results.DUPLICATE_DETECTED_CODE
        return await self._check_soon(session, model, target, code, "duplicate detected")

    async def _status(
        self, session: AsyncSession, payout: Payout, envelope: results.ResultEnvelope
    ) -> Applied:
        subject = results.status_subject(envelope)
        if subject and subject != payout.provider_request_id:
            return await self._anomaly(session, payout, "status result about another transaction")
        report = results.status_report(envelope)
        if report is None:
            return "noop", f"status query failed ({envelope.code}): asked again later"
        if report.state is ReportState.NOT_FOUND:
            if payout.status in OPEN_STATUSES and payout.send_state in ("not_sent", "ambiguous"):
                # Daraja never got it: recovery sends it once, with the same id.
                await set_fields(
                    session, Payout, payout.id, send_state="not_found", next_check_at=utcnow()
                )
                return "noop", "no such transaction at M-Pesa: to be sent"
            return "noop", f"no such transaction at M-Pesa (send state {payout.send_state})"
        return await self._report(session, Payout, payout, report, "query")

    async def _unconfirmed(
        self, session: AsyncSession, refund: MoneyRow, report: ProviderReport
    ) -> Applied:
        """A confirming repeat that did not go through says nothing of the first reversal
        (the initiator locked since, the float it drained): the refund stays open, unknown,
        and is checked again; an operator sees why, once."""
        if refund.status not in OPEN_STATUSES:
            return "noop", f"confirming reversal answered {report.raw_code}"
        detail = f"confirming reversal answered {report.raw_code}: {report.raw_message}"
        if not await anomalies.recorded(session, refund.id, UNCONFIRMED_REVERSAL):
            anomalies.record(
                session, refund.merchant_id, refund.id, UNCONFIRMED_REVERSAL, {"detail": detail}
            )
        change = MoneyChange(
            PaymentStatus.UNKNOWN,
            source="query",
            provider_code=report.raw_code,
            next_check_at=refund.next_check_at,
        )
        decision = await transition(session, Refund, refund.id, change, refund_view)
        return decision.value, detail

    # ----- shared -------------------------------------------------------------------------------
    async def _report(
        self,
        session: AsyncSession,
        model: MoneyModel,
        target: MoneyRow,
        report: ProviderReport,
        source: str,
        recipient_name: str | None = None,
    ) -> Applied:
        if (
            report.state is ReportState.SUCCEEDED
            and report.amount is not None
            and Decimal(report.amount) != target.amount
        ):
            return await self._anomaly(
                session, target, f"amount {report.amount} differs from {target.amount}"
            )
        change = change_of(report, source, recipient_name)
        if change is None:
            return "noop", f"provider reports {report.state.value}"
        decision = await transition(session, model, target.id, change, _view(model))
        return decision.value, None

    async def _anomaly(
        self, session: AsyncSession, target: MoneyRow, detail: str, kind: str = "callback_mismatch"
    ) -> Applied:
        anomalies.record(session, target.merchant_id, target.id, kind, {"detail": detail})
        return "anomaly", detail

    # ----- the sweep of callbacks stored but never applied --------------------------------------
    async def unprocessed(self, older_than_s: float = 5.0, limit: int = 100) -> list[int]:
        return await due_callbacks(self._sessions, KINDS, older_than_s, limit)

    async def token_for(self, callback_id: int) -> str | None:
        """The token of the account the URL's payout/refund belongs to, if the stored 4-char
        hint agrees (the full token is never stored with the callback)."""
        async with self._sessions() as session:
            row = await session.get(InboundCallback, callback_id)
            if row is None or not row.payment_id:
                return None
            model: MoneyModel = Payout if row.kind in PAYOUT_KINDS else Refund
            target: MoneyRow | None = await session.get(model, row.payment_id)
            account = await session.get(ProviderAccount, target.account_id) if target else None
            parts = row.path.split("/")  # "", "callbacks", "<hint>…", kind, id
            hint = parts[2].rstrip("…") if len(parts) > 2 else ""
            if account is None or not hint or not account.callback_token.startswith(hint):
                return None
            return account.callback_token


def change_of(
    report: ProviderReport, source: str, recipient_name: str | None = None
) -> MoneyChange | None:
    if report.state is ReportState.SUCCEEDED:
        return MoneyChange(
            PaymentStatus.SUCCEEDED,
            source=source,
            receipt=report.receipt,
            provider_code=report.raw_code,
            provider_ref=report.provider_ref,
            recipient_name=recipient_name,
        )
    if report.state is ReportState.FAILED:
        return MoneyChange(
            PaymentStatus.FAILED,
            source=source,
            failure_code=report.failure_code or "unknown_failure",
            failure_message=report.raw_message,
            provider_code=report.raw_code,
            provider_ref=report.provider_ref,
        )
    return None


def _already_reversed(report: ProviderReport, *, confirming: bool) -> ProviderReport:
    """``R000001``: for a refund's own reversal, the payment had been reversed before (failed
    ``already_refunded``); for recovery's confirming repeat, the refund's reversal went
    through (succeeded, no receipt: Daraja does not repeat it)."""
    if confirming:
        return ProviderReport(
            ReportState.SUCCEEDED,
            provider_ref=None,
            raw_code=report.raw_code,
            raw_message="reversed (confirmed: a repeat was refused as already reversed)",
        )
    return ProviderReport(
        ReportState.FAILED,
        raw_code=report.raw_code,
        raw_message=report.raw_message,
        failure_code=ALREADY_REFUNDED,
    )


def _view(model: MoneyModel) -> Any:
    return payout_view if model is Payout else refund_view
