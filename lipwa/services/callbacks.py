"""Provider callbacks in: stored raw first, then applied once through the state machine.

A callback is trusted only as far as its URL: the account's unguessable token and the payment
id are in the path, and the body must agree with what Lipwa sent (CheckoutRequestID,
MoMo externalId, amount). Anything else is recorded and changes nothing.

Neither provider signs its callbacks, so a final report about an open payment is confirmed
with the provider first: Daraja's STK query for the CheckoutRequestID, MTN's status GET for the
X-Reference-Id. The provider's answer is what is applied; a callback it contradicts is kept as
an anomaly. An STK query carries no receipt, so a callback it agrees with is applied as sent.
When the provider cannot be asked (or Daraja's query still says "being processed", as it may
for a moment after the callback), the callback stays unprocessed and the sweep asks again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import utcnow
from lipwa.domain.states import PaymentStatus, Transition
from lipwa.providers.base import ProviderReport, ReportState
from lipwa.providers.momo.client import parse_momo_callback
from lipwa.providers.mpesa.client import parse_stk_callback
from lipwa.services import anomalies
from lipwa.services.callback_confirm import ProviderConfirmer
from lipwa.services.transitions import OPEN_STATUSES, Change, apply
from lipwa.services.unconfirmed import note_unconfirmed
from lipwa.store.tables import InboundCallback, Payment, ProviderAccount

log = structlog.get_logger("lipwa.callbacks")

KEPT_HEADERS = ("content-type", "user-agent", "x-forwarded-for", "content-length")
FINAL_REPORTS = (ReportState.SUCCEEDED, ReportState.FAILED)
CONFIRMED_KINDS = ("stk", "momo")


def change_from_report(report: ProviderReport, source: str) -> Change | None:
    """The state change a provider report asks for, or None when it reports nothing final."""
    if report.state is ReportState.SUCCEEDED:
        return Change(
            PaymentStatus.SUCCEEDED,
            source=source,
            receipt=report.receipt,
            provider_code=report.raw_code,
            provider_ref=report.provider_ref,
        )
    if report.state is ReportState.FAILED:
        return Change(
            PaymentStatus.FAILED,
            source=source,
            failure_code=report.failure_code or "unknown_failure",
            failure_message=report.raw_message,
            provider_code=report.raw_code,
            provider_ref=report.provider_ref,
        )
    return None


@dataclass(frozen=True)
class Matched:
    """A callback matched to its payment, with what it reports."""

    account: ProviderAccount
    payment: Payment
    report: ProviderReport
    provider_ref: str | None  # the CheckoutRequestID an STK callback names
    mismatch: str | None  # why the report cannot be about this payment


class CallbackService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        confirmer: ProviderConfirmer | None = None,
    ) -> None:
        self._sessions = sessions
        self._confirmer = confirmer

    async def receive(
        self,
        *,
        token: str,
        kind: str,
        payment_id: str | None,
        method: str,
        headers: dict[str, str],
        body: bytes,
        remote_addr: str | None,
    ) -> InboundCallback:
        """Persist the raw request (committed before anything else happens); returns the row."""
        async with self._sessions() as session, session.begin():
            row = InboundCallback(
                account_id=None,
                payment_id=payment_id,
                kind=kind,
                method=method,
                # The token is a credential of sorts: keep only a hint of it.
                path=f"/callbacks/{token[:4]}…/{kind}/{payment_id or ''}",
                headers={k: v for k, v in headers.items() if k.lower() in KEPT_HEADERS},
                body=body.decode("utf-8", errors="replace"),
                remote_addr=remote_addr,
                received_at=utcnow(),
                # Set, not left to the database: process() reads them off the returned row.
                outcome=None,
                detail=None,
                processed_at=None,
                retry_at=None,
            )
            session.add(row)
        return row

    async def process(
        self, callback_id: int, token: str, stored: InboundCallback | None = None
    ) -> str:
        """Apply a stored callback; returns its outcome. Safe to run more than once.
        ``stored``: the row :meth:`receive` just returned, which spares reading it back."""
        confirmed = None
        if self._confirmer is not None:
            to_confirm = await self._to_confirm(callback_id, token, stored)
            if to_confirm is not None:
                confirmed = await self._confirmer.status(*to_confirm)
                if confirmed is None or _still_processing(to_confirm[1], confirmed):
                    return await note_unconfirmed(self._sessions, callback_id)
        async with self._sessions() as session, session.begin():
            row: InboundCallback | None
            if stored is not None and stored.processed_at is None:
                row = await session.merge(stored, load=False)
            else:
                row = await session.get(InboundCallback, callback_id)
            if row is None or row.processed_at is not None:
                return row.outcome or "noop" if row else "missing"
            outcome, detail, account_id = await self._apply(session, row, token, confirmed)
            row.outcome = outcome
            row.detail = detail[:300] if detail else None
            row.account_id = account_id
            row.processed_at = utcnow()
        log.info("callback_processed", callback_id=callback_id, kind=row.kind, outcome=outcome)
        return outcome

    async def _to_confirm(
        self, callback_id: int, token: str, stored: InboundCallback | None
    ) -> tuple[ProviderAccount, str, str] | None:
        """(account, kind, reference to ask about) when this is a final report about an open
        payment, which the provider must confirm before it is applied; None otherwise (reads
        only)."""
        if stored is not None and stored.kind not in CONFIRMED_KINDS:
            return None
        async with self._sessions() as session:
            row = stored or await session.get(InboundCallback, callback_id)
            if row is None or row.processed_at is not None or row.kind not in CONFIRMED_KINDS:
                return None
            matched = await self._match(session, row, token)
        if not isinstance(matched, Matched) or matched.mismatch:
            return None
        if matched.report.state not in FINAL_REPORTS:
            return None
        payment = matched.payment
        if payment.status not in OPEN_STATUSES:
            return None
        # A callback may beat Daraja's answer to the push: the CheckoutRequestID it names is
        # then the one to ask about (the query is made with this account's own shortcode).
        reference = payment.provider_ref or matched.provider_ref
        if reference is None:
            return None
        return matched.account, row.kind, reference

    async def _match(
        self, session: AsyncSession, row: InboundCallback, token: str
    ) -> Matched | tuple[str, str, str | None]:
        """The callback's account, payment and report, or why there is none (outcome,
        detail, account id). Reads only: ``row`` is not changed."""
        account = await session.scalar(
            select(ProviderAccount).where(ProviderAccount.callback_token == token)
        )
        if account is None:
            return "forged", "no account has this callback token", None
        expected_provider = "mpesa" if row.kind == "stk" else "momo"
        if account.provider != expected_provider:
            return "forged", "callback kind does not match the account's provider", account.id
        try:
            payload: Any = json.loads(row.body) if row.body else None
        except ValueError:
            return "invalid", "body is not JSON", account.id
        report, provider_ref = _parse(row.kind, payload)
        if report is None:
            return "invalid", "body is not a recognised callback", account.id
        payment = await self._find_payment(session, account, row.payment_id, provider_ref)
        if payment is None:
            return "unmatched", f"no payment for this callback (ref {provider_ref})", account.id
        mismatch = _mismatch(payment, report, provider_ref)
        if mismatch is None and provider_ref and payment.provider_ref is None:
            # The payment never learnt its CheckoutRequestID: the one named must at least not
            # be another payment's (whose success the STK query would vouch for).
            owner = await session.scalar(
                select(Payment.id).where(
                    Payment.account_id == account.id, Payment.provider_ref == provider_ref
                )
            )
            if owner is not None and owner != payment.id:
                mismatch = f"CheckoutRequestID belongs to payment {owner}"
        return Matched(account, payment, report, provider_ref, mismatch)

    async def _apply(
        self,
        session: AsyncSession,
        row: InboundCallback,
        token: str,
        confirmed: ProviderReport | None,
    ) -> tuple[str, str | None, str | None]:
        matched = await self._match(session, row, token)
        if not isinstance(matched, Matched):
            return matched
        account, payment, report = matched.account, matched.payment, matched.report
        row.payment_id = payment.id
        if matched.mismatch:
            await self._anomaly(session, payment, "callback_mismatch", matched.mismatch, report)
            return "anomaly", matched.mismatch, account.id
        if confirmed is not None:
            said = (
                f"the provider reports {confirmed.state.value}, the callback {report.state.value}"
            )
            if confirmed.state not in FINAL_REPORTS:
                await self._anomaly(session, payment, "unconfirmed_callback", said, report)
                return "anomaly", said, account.id
            if confirmed.state is not report.state:
                await self._anomaly(session, payment, "callback_contradicted", said, report)
                report = confirmed  # what the provider says, not what the callback claimed
            elif row.kind == "momo":
                report = confirmed  # MTN's answer carries everything the callback does
        change = change_from_report(report, "callback")
        if change is None:
            return "noop", f"provider reports {report.state.value}", account.id
        decision = await apply(session, payment.id, change, loaded=payment)
        return decision.value, None, account.id

    async def _find_payment(
        self,
        session: AsyncSession,
        account: ProviderAccount,
        payment_id: str | None,
        provider_ref: str | None,
    ) -> Payment | None:
        if payment_id:
            payment = await session.get(Payment, payment_id)
            if payment is not None and payment.account_id == account.id:
                return payment
        if provider_ref:
            found: Payment | None = await session.scalar(
                select(Payment).where(
                    Payment.account_id == account.id, Payment.provider_ref == provider_ref
                )
            )
            return found
        return None

    async def _anomaly(
        self,
        session: AsyncSession,
        payment: Payment,
        kind: str,
        detail: str,
        report: ProviderReport,
    ) -> None:
        anomalies.record(
            session,
            payment.merchant_id,
            payment.id,
            kind,
            {
                "detail": detail,
                "reported_state": report.state.value,
                "provider_code": report.raw_code,
                "receipt": report.receipt,
                "amount": str(report.amount) if report.amount is not None else None,
            },
        )

    async def mark_unprocessable(self, callback_id: int, reason: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(InboundCallback)
                .where(InboundCallback.id == callback_id)
                .values(outcome="invalid", detail=reason[:300], processed_at=utcnow())
            )


def _still_processing(kind: str, confirmed: ProviderReport) -> bool:
    """Daraja's STK query may say "being processed" for a moment after the callback: not an
    answer yet. (MTN's status is the source its callback is sent from: PENDING contradicts.)"""
    return kind == "stk" and confirmed.state is ReportState.PENDING


def _parse(kind: str, payload: Any) -> tuple[ProviderReport | None, str | None]:
    if kind == "stk":
        parsed = parse_stk_callback(payload)
        if parsed is None:
            return None, None
        checkout_id, report = parsed
        return report, checkout_id
    return parse_momo_callback(payload), None


def _mismatch(payment: Payment, report: ProviderReport, provider_ref: str | None) -> str | None:
    """Why this callback cannot be about this payment, or None when it agrees."""
    if provider_ref and payment.provider_ref and provider_ref != payment.provider_ref:
        return "CheckoutRequestID does not match the payment"
    if report.external_id is not None and report.external_id != payment.id:
        return "externalId does not match the payment"
    if (
        report.state is ReportState.SUCCEEDED
        and report.amount is not None
        and Decimal(report.amount) != payment.amount
    ):
        return f"amount {report.amount} differs from the payment's {payment.amount}"
    return None


# Exposed for the worker and status queries.
__all__ = ["CallbackService", "Transition", "change_from_report"]
