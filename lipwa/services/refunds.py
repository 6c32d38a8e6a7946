"""Money back for a succeeded payment (M-Pesa reversal, MoMo disbursement refund).

The sum of a payment's refunds that have not failed never exceeds what was paid. The check runs
inside the write-ahead transaction after locking the payment row (``FOR UPDATE`` on
PostgreSQL; SQLite's single writer lock does the same), so two concurrent refunds cannot both
pass it. M-Pesa reverses whole transactions only (a partial amount is refused before anything
is written); MoMo refunds may be partial and name the payment by its ``X-Reference-Id``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import structlog
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import utcnow
from lipwa.domain.errors import DomainError
from lipwa.domain.ids import new_id
from lipwa.domain.json_object import JsonObject
from lipwa.domain.money import format_amount, parse_amount, to_provider_units
from lipwa.domain.states import PaymentStatus
from lipwa.errors import invalid
from lipwa.providers.base import SendOutcome, SendResult
from lipwa.services import audit, idempotency
from lipwa.services.accounts import Caller, callback_base
from lipwa.services.flags import FlagCache, send_refusal
from lipwa.services.idempotency import Outcome, request_hash
from lipwa.services.money_states import emit, record_send
from lipwa.services.money_views import refund_view
from lipwa.services.payments import get_payment
from lipwa.services.providers import ProviderRegistry
from lipwa.store.tables import Payment, ProviderAccount, Refund

log = structlog.get_logger("lipwa.refunds")

DISBURSEMENT = "disbursement"


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: str | None = Field(
        None,
        description="Decimal string; omit to refund what is left of the payment. M-Pesa "
        "reverses whole payments only.",
    )
    reason: str = Field("", max_length=100)
    metadata: JsonObject = Field(default_factory=dict)


@dataclass(frozen=True)
class RefundPlan:
    payment: Payment
    account: ProviderAccount
    amount: Decimal | None  # None: the rest, decided under the lock


def receiver_party(account: ProviderAccount) -> str:
    """The shortcode that received the payment (the reversal's ReceiverParty)."""
    config = account.config
    return str(config.get("till_number") if config.get("kind") == "till" else config["shortcode"])


async def refunded_so_far(session: AsyncSession, payment_id: str) -> Decimal:
    """Sum of the payment's refunds that have not failed (pending and unknown count)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.payment_id == payment_id, Refund.status != PaymentStatus.FAILED.value
        )
    )
    return Decimal(str(total or 0))


class RefundService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: ProviderRegistry,
        public_url: str,
        *,
        first_check_after_s: float = 20.0,
        idempotency_wait_s: float = 15.0,
        abandoned_after_s: float = 60.0,
        flags: FlagCache | None = None,
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._public_url = public_url
        self._first_check = timedelta(seconds=first_check_after_s)
        self._wait_s = idempotency_wait_s
        self._abandoned_after = timedelta(seconds=abandoned_after_s)
        self._flags = flags

    # ----- validation (reads only) ------------------------------------------------------------
    async def plan(
        self, session: AsyncSession, caller: Caller, payment_id: str, data: RefundIn
    ) -> RefundPlan:
        payment = await get_payment(session, caller, payment_id)
        if payment.status != PaymentStatus.SUCCEEDED.value:
            raise invalid(
                "payment_not_refundable",
                f"Payment {payment.id} is {payment.status}: only a succeeded payment is refunded",
            )
        account = await session.get(ProviderAccount, payment.account_id)
        assert account is not None
        amount = None
        if data.amount is not None:
            try:
                amount = parse_amount(data.amount, payment.currency)
            except DomainError as exc:
                raise invalid(exc.code, exc.message, "amount") from exc
        if account.provider == "mpesa":
            self._check_mpesa(account, payment, amount)
        elif not self._registry.momo(account).supports(DISBURSEMENT):
            raise invalid(
                "refunds_not_configured",
                f"the momo account {account.id} cannot refund: it needs a disbursement "
                "subscription key",
            )
        refusal = await send_refusal(session, self._flags, caller.merchant_id, account)
        if refusal is not None:
            raise refusal
        return RefundPlan(payment, account, amount)

    def _check_mpesa(
        self, account: ProviderAccount, payment: Payment, amount: Decimal | None
    ) -> None:
        if amount is not None and amount != payment.amount:
            raise invalid(
                "partial_refund_not_supported",
                "M-Pesa reverses whole transactions only: omit amount, or give "
                f"{format_amount(payment.amount, payment.currency)}",
                "amount",
            )
        if payment.amount != payment.amount.to_integral_value():
            # A paybill payment may carry cents; a reversal's Amount is whole shillings, and
            # one cut down to them would never match the result Daraja sends back.
            raise invalid(
                "amount_not_whole",
                f"M-Pesa reverses whole shillings only, and payment {payment.id} is "
                f"{format_amount(payment.amount, payment.currency)}: refund it from the M-Pesa "
                "portal",
                "amount",
            )
        if not payment.receipt:
            raise invalid(
                "receipt_missing",
                f"Payment {payment.id} has no M-Pesa receipt (it was settled by a status query), "
                "and a reversal names the receipt: refund it from the M-Pesa portal",
            )
        if not self._registry.mpesa(account).has_initiator(receiver_party(account)):
            raise invalid(
                "refunds_not_configured",
                f"the mpesa account {account.id} cannot reverse payments: it needs an initiator "
                "name and password and the certificate",
            )

    # ----- create -------------------------------------------------------------------------------
    async def create(self, caller: Caller, payment_id: str, data: RefundIn, key: str) -> Outcome:
        key = f"{caller.mode}:{key}"  # keys live per mode, as for payments
        method_path = f"POST /v1/payments/{payment_id}/refunds"
        digest = request_hash(data.model_dump(mode="json"))
        async with self._sessions() as session:
            found, claimed = await idempotency.lookup(
                session, caller.merchant_id, key, method_path, digest
            )
            if found is None and claimed:
                found = await idempotency.abandoned_answer(
                    session, Refund, refund_view, caller.merchant_id, key, self._abandoned_after
                )
            if found is not None:
                return found
            plan = await self.plan(session, caller, payment_id, data)
        try:
            refund = await self._write_ahead(caller, data, plan, key, method_path, digest)
        except IntegrityError:  # a twin with this key claimed it first
            return await idempotency.wait_for_twin(
                self._sessions, caller.merchant_id, key, method_path, digest, self._wait_s
            )
        result = await self.send(plan.account, plan.payment, refund)
        async with self._sessions() as session, session.begin():
            await record_send(
                session,
                Refund,
                refund.id,
                result,
                next_check_at=utcnow() + self._first_check,
                view=refund_view,
            )
            fresh = await session.get(Refund, refund.id, populate_existing=True)
            assert fresh is not None
            view = refund_view(fresh)
            await idempotency.finish(session, caller.merchant_id, key, 201, view)
        log.info("refund_sent", refund_id=refund.id, outcome=result.outcome.value)
        return Outcome(201, view)

    async def _write_ahead(
        self,
        caller: Caller,
        data: RefundIn,
        plan: RefundPlan,
        key: str,
        method_path: str,
        digest: str,
    ) -> Refund:
        """Claim the key, lock the payment, check what is left and store the refund: one
        transaction. Raises IntegrityError for a twin, ApiError when nothing is left."""
        now = utcnow()
        payment, account = plan.payment, plan.account
        async with self._sessions() as session, session.begin():
            refund_id = new_id("re")
            idempotency.claim(session, caller.merchant_id, key, method_path, digest, now, refund_id)
            await session.flush()
            # The lock that serialises refunds of one payment (a no-op clause on SQLite, whose
            # BEGIN IMMEDIATE already holds the database's single writer lock).
            await session.execute(
                select(Payment.id).where(Payment.id == payment.id).with_for_update()
            )
            left = payment.amount - await refunded_so_far(session, payment.id)
            amount = plan.amount if plan.amount is not None else left
            if amount <= 0 or amount > left:
                code = "already_refunded" if left <= 0 else "amount_exceeds_refundable"
                rest = format_amount(max(left, Decimal(0)), payment.currency)
                raise invalid(
                    code,
                    f"Payment {payment.id} has {rest} {payment.currency} left to refund "
                    "(refunds that have not failed count)",
                    "amount",
                )
            request_id = str(uuid.uuid4())
            refund = Refund(
                id=refund_id,
                merchant_id=caller.merchant_id,
                payment_id=payment.id,
                account_id=account.id,
                mode=caller.mode,
                provider=account.provider,
                status=PaymentStatus.PENDING.value,
                amount=amount,
                currency=payment.currency,
                reason=data.reason,
                meta=data.metadata,
                provider_request_id=request_id,
                # MoMo's reference is ours and known now; Daraja's ConversationID comes back.
                provider_ref=request_id if account.provider == "momo" else None,
                send_state="not_sent",
                check_attempts=0,
                next_check_at=now + self._first_check,
                created_at=now,
                updated_at=now,
            )
            session.add(refund)
            await session.flush()
            await emit(session, refund, "refund.created", refund_view)
            detail = {"payment_id": payment.id, "amount": str(amount), "currency": refund.currency}
            await audit.record(
                session,
                caller.key_id,
                "refund.requested",
                refund.id,
                caller.merchant_id,
                data.reason,
                detail,
            )
        return refund

    # ----- send ---------------------------------------------------------------------------------
    async def send(
        self, account: ProviderAccount, payment: Payment, refund: Refund, *, kind: str = "reversal"
    ) -> SendResult:
        """The provider call. ``kind`` names the M-Pesa result URL: ``reversal`` for the
        refund itself, ``reversal-check`` for recovery's confirming repeat."""
        base = callback_base(self._public_url, account)
        try:
            if account.provider == "mpesa":
                assert payment.receipt is not None
                return await self._registry.mpesa(account).reversal(
                    transaction_id=payment.receipt,
                    amount=int(refund.amount),
                    receiver_party=receiver_party(account),
                    result_url=f"{base}/{kind}/{refund.id}",
                    queue_timeout_url=f"{base}/reversal-timeout/{refund.id}",
                    remarks=refund.reason or "Refund",
                )
            return await self._registry.momo(account).refund(
                reference_id=refund.provider_request_id,
                reference_id_to_refund=payment.provider_request_id,
                amount=to_provider_units(refund.amount),
                currency=refund.currency,
                external_id=refund.id,
                payer_message=refund.reason or "Refund",
                payee_note=refund.reason or "Refund",
                callback_url=f"{base}/momo-refund/{refund.id}",
            )
        except Exception as exc:  # a bug must not lose the refund: ambiguous
            log.exception("refund_send_crashed", refund_id=refund.id)
            return SendResult(SendOutcome.AMBIGUOUS, error_message=type(exc).__name__)
