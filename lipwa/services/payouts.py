"""Pay money out to a phone (M-Pesa B2C v3, MoMo disbursement transfer).

The collection flow's shape: validate → claim the Idempotency-Key and write the payout ahead
(its OriginatorConversationID / X-Reference-Id included) in one transaction → send → record.
That provider request id is the payout's only handle: it is never replaced, so whatever fails
in between, the provider sees at most one payout (Daraja refuses a repeated
OriginatorConversationID, MoMo a repeated X-Reference-Id) and recovery asks about it by that id.

Approval: a merchant whose settings hold ``payout_approval_threshold`` (``{"KES": "50000"}``)
has payouts at or above it stored ``awaiting_approval``; nothing is sent until another API key
of the merchant (or the admin) approves it. It may be cancelled while it waits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import utcnow
from lipwa.domain.errors import DomainError
from lipwa.domain.ids import new_id
from lipwa.domain.json_object import JsonObject
from lipwa.domain.money import (
    AmountRule,
    check_amount,
    parse_amount,
    rule_for,
    to_provider_units,
)
from lipwa.domain.phones import Network, normalise_phone, provider_for_network
from lipwa.domain.policy import GuardPolicy
from lipwa.domain.states import PaymentStatus
from lipwa.errors import ApiError, invalid
from lipwa.metrics import GUARD_REFUSALS
from lipwa.providers.base import SendOutcome, SendResult
from lipwa.services import audit, idempotency
from lipwa.services.accounts import Caller, callback_base
from lipwa.services.collect import COUNTRY_FOR_CURRENCY
from lipwa.services.flags import FlagCache, send_refusal
from lipwa.services.idempotency import Outcome, request_hash
from lipwa.services.money_states import emit, record_send
from lipwa.services.money_views import payout_view
from lipwa.services.payer_guards import take_turn
from lipwa.services.providers import ProviderRegistry
from lipwa.services.ratelimit import merchant_policy
from lipwa.store.tables import IdempotencyKey, Merchant, Payout, ProviderAccount

log = structlog.get_logger("lipwa.payouts")

METHOD_PATH = "POST /v1/payouts"
AWAITING = "awaiting_approval"
CANCELLED = "cancelled"
# Daraja B2C: KES 10..250,000 per transaction, whole shillings (daraja.md §2.5).
B2C_RULE = AmountRule(Decimal(10), Decimal(250_000), whole_units=True, provider="mpesa")
DISBURSEMENT = "disbursement"


class PayoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Any = Field(description='Decimal string in the currency\'s major unit, e.g. "500".')
    currency: str = Field(min_length=3, max_length=3, examples=["KES"])
    phone: Any = Field(description="Payee's number in any common form.", examples=["0708374149"])
    reason: str = Field("", max_length=100, description="Shown to the payee (B2C Remarks).")
    reference: str = Field(min_length=1, max_length=100, description="Your own reference.")
    country: str | None = Field(None, min_length=2, max_length=2)
    metadata: JsonObject = Field(default_factory=dict)


@dataclass(frozen=True)
class PayoutPlan:
    account: ProviderAccount
    msisdn: str
    network: str
    amount: Decimal
    currency: str
    approval_required: bool


def approval_threshold(settings: dict[str, Any], currency: str) -> Decimal | None:
    """The amount from which a payout in ``currency`` waits for approval; None: never. A
    threshold that cannot be read holds every payout (0): an approval step must never be
    switched off by a typo."""
    thresholds = settings.get("payout_approval_threshold")
    if thresholds is None:
        return None
    raw = thresholds.get(currency) if isinstance(thresholds, dict) else ""
    if raw is None and isinstance(thresholds, dict):
        # A key that is no currency code ("kes", stored before keys were checked) may have
        # been meant for this one: hold rather than guess it away.
        if any(key.strip().upper() == currency and key != currency for key in thresholds):
            log.warning("payout_approval_threshold_unreadable", currency=currency)
            return Decimal(0)
        return None
    try:
        threshold = Decimal(str(raw))
    except InvalidOperation:
        threshold = Decimal("NaN")
    if not threshold.is_finite() or threshold < 0:
        log.warning("payout_approval_threshold_unreadable", currency=currency)
        return Decimal(0)
    return threshold


class PayoutService:
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
        prefix_overrides: dict[str, Network] | None = None,
        guard_defaults: GuardPolicy | None = None,
    ) -> None:
        self._defaults = guard_defaults or GuardPolicy()
        self._sessions = sessions
        self._registry = registry
        self._public_url = public_url
        self._first_check = timedelta(seconds=first_check_after_s)
        self._wait_s = idempotency_wait_s
        self._abandoned_after = timedelta(seconds=abandoned_after_s)
        self._flags = flags
        self._prefixes = prefix_overrides

    # ----- validation (reads only) ------------------------------------------------------------
    async def plan(self, session: AsyncSession, caller: Caller, data: PayoutIn) -> PayoutPlan:
        currency = data.currency.upper()
        country = (data.country or COUNTRY_FOR_CURRENCY.get(currency) or "").upper() or None
        try:
            phone = normalise_phone(data.phone, country, prefix_overrides=self._prefixes)
        except DomainError as exc:
            raise invalid(exc.code, exc.message, exc.param or "phone") from exc
        provider = provider_for_network(phone.network)
        if provider is None:
            raise invalid(
                "unsupported_network",
                f"{phone.network.value} numbers cannot be paid: Lipwa serves M-Pesa and MTN MoMo",
                "phone",
            )
        merchant = await session.get(Merchant, caller.merchant_id)
        if merchant is None:
            raise ApiError(401, "authentication_error", "invalid_api_key", "Invalid API key")
        account = await session.scalar(
            select(ProviderAccount)
            .where(
                ProviderAccount.merchant_id == caller.merchant_id,
                ProviderAccount.provider == provider,
                ProviderAccount.environment == caller.environment,
                ProviderAccount.currency == currency,
                ProviderAccount.status == "active",
            )
            .order_by(ProviderAccount.created_at, ProviderAccount.id)  # the oldest, every time
            .limit(1)
        )
        if account is None:
            raise invalid(
                "no_account_for_network",
                f"this merchant has no active {provider} {caller.environment} account in "
                f"{currency} to pay {phone.network.value} numbers from",
                "phone",
            )
        self._check_configured(account)
        try:
            amount = parse_amount(data.amount, currency)
            rule = B2C_RULE if provider == "mpesa" else rule_for(provider, currency)
            check_amount(amount, rule, currency)
        except DomainError as exc:
            raise invalid(exc.code, exc.message, exc.param or "amount") from exc
        if self._flags is not None:
            await self._flags.refuse_if_off(session, caller.merchant_id, provider, account.id)
        threshold = approval_threshold(merchant.settings, currency)
        return PayoutPlan(
            account,
            phone.msisdn,
            phone.network.value,
            amount,
            currency,
            approval_required=threshold is not None and amount >= threshold,
        )

    def _check_configured(self, account: ProviderAccount) -> None:
        if account.provider == "mpesa":
            ready = self._registry.mpesa(account).has_initiator()
            what = "an initiator name and password, the certificate and a B2C shortcode"
        else:
            ready = self._registry.momo(account).supports(DISBURSEMENT)
            what = "a disbursement subscription key"
        if not ready:
            raise invalid(
                "payouts_not_configured",
                f"the {account.provider} account {account.id} cannot pay out: it needs {what}",
                "phone",
            )

    # ----- create -------------------------------------------------------------------------------
    async def create(self, caller: Caller, data: PayoutIn, key: str) -> Outcome:
        key = f"{caller.mode}:{key}"  # keys live per mode, as for payments
        digest = request_hash(data.model_dump(mode="json"))
        async with self._sessions() as session:
            found, claimed = await idempotency.lookup(
                session, caller.merchant_id, key, METHOD_PATH, digest
            )
            if found is None and claimed:
                found = await idempotency.abandoned_answer(
                    session, Payout, payout_view, caller.merchant_id, key, self._abandoned_after
                )
            if found is not None:
                return found
            plan = await self.plan(session, caller, data)
        payout = await self._write_ahead(caller, data, plan, key, digest)
        if payout is None:  # a twin with this key claimed it first
            return await idempotency.wait_for_twin(
                self._sessions, caller.merchant_id, key, METHOD_PATH, digest, self._wait_s
            )
        if payout.status == AWAITING:
            return Outcome(201, payout_view(payout))
        result = await self.send(plan.account, payout)
        return Outcome(201, await self.record(payout.id, result, caller=caller, key=key))

    async def _write_ahead(
        self, caller: Caller, data: PayoutIn, plan: PayoutPlan, key: str, digest: str
    ) -> Payout | None:
        now = utcnow()
        awaiting = plan.approval_required
        payout = Payout(
            id=new_id("po"),
            merchant_id=caller.merchant_id,
            account_id=plan.account.id,
            mode=caller.mode,
            provider=plan.account.provider,
            status=AWAITING if awaiting else PaymentStatus.PENDING.value,
            amount=plan.amount,
            currency=plan.currency,
            phone=plan.msisdn,
            network=plan.network,
            reason=data.reason,
            reference=data.reference,
            meta=data.metadata,
            # The one provider handle, stored before any call and never replaced.
            provider_request_id=str(uuid.uuid4()),
            send_state="not_sent",
            requested_by=caller.key_id,
            approval_required=awaiting,
            check_attempts=0,
            next_check_at=None if awaiting else now + self._first_check,
            created_at=now,
            updated_at=now,
        )
        try:
            async with self._sessions() as session, session.begin():
                # Payouts to one phone take turns, so the duplicate check sees every earlier one.
                await take_turn(session, "payee", caller, plan.msisdn)
                if await self._duplicate(session, caller, payout, key):
                    return None  # a twin with this key got there first: replay its answer
                idempotency.claim(
                    session, caller.merchant_id, key, METHOD_PATH, digest, now, payout.id
                )
                await session.flush()
                session.add(payout)
                await session.flush()
                await emit(session, payout, "payout.created", payout_view)
                if awaiting:
                    await emit(session, payout, "payout.awaiting_approval", payout_view)
                    await idempotency.finish(
                        session, caller.merchant_id, key, 201, payout_view(payout)
                    )
        except IntegrityError:
            return None
        return payout

    async def _duplicate(
        self, session: AsyncSession, caller: Caller, payout: Payout, key: str
    ) -> bool:
        """True when a twin with this key wrote the same payout first; raises 409
        ``duplicate_payout`` when another key did, within the merchant's duplicate window:
        a payout cannot be taken back, so a retry with a new key must not pay twice."""
        window_s = (await merchant_policy(session, caller, self._defaults)).duplicate_window_s
        if window_s <= 0:
            return False
        original = await session.scalar(
            select(Payout.id)
            .where(
                Payout.merchant_id == caller.merchant_id,
                Payout.mode == caller.mode,
                Payout.phone == payout.phone,
                Payout.amount == payout.amount,
                Payout.currency == payout.currency,
                Payout.reference == payout.reference,
                Payout.created_at >= payout.created_at - timedelta(seconds=window_s),
                Payout.status.not_in((PaymentStatus.FAILED.value, CANCELLED)),
            )
            .order_by(Payout.created_at.desc())
            .limit(1)
        )
        if original is None:
            return False
        if await session.get(IdempotencyKey, (caller.merchant_id, key)) is not None:
            return True
        GUARD_REFUSALS.labels(code="duplicate_payout").inc()
        raise ApiError(
            409,
            "invalid_request_error",
            "duplicate_payout",
            f"{original} already pays this phone the same amount with the same reference. To "
            "retry safely resend with the same Idempotency-Key; for a new payout use a new "
            "reference.",
            "reference",
            extra={"payout_id": original},
        )

    # ----- approval -----------------------------------------------------------------------------
    async def approve(self, payout_id: str, *, caller: Caller | None) -> dict[str, Any]:
        """Approve an awaiting payout and send it. ``caller`` None is the admin. The key that
        asked for the payout cannot approve it. Approving an approved payout is a no-op."""
        approver = caller.key_id if caller else "admin"
        now = utcnow()
        async with self._sessions() as session, session.begin():
            payout = await self._scoped(session, payout_id, caller)
            if caller is not None and payout.requested_by == caller.key_id:
                raise ApiError(
                    403,
                    "permission_error",
                    "approval_requires_other_key",
                    "A payout must be approved with another API key of the merchant than the "
                    "one that requested it (or by the admin)",
                )
            account = await session.get(ProviderAccount, payout.account_id)
            assert account is not None
            if payout.status == AWAITING:
                # A kill switch thrown or the account disabled since the request keeps it waiting.
                refusal = await send_refusal(session, self._flags, payout.merchant_id, account)
                if refusal is not None:
                    raise refusal
            won = await session.execute(
                update(Payout)
                .where(Payout.id == payout.id, Payout.status == AWAITING)
                .values(
                    status=PaymentStatus.PENDING.value,
                    approved_by=approver,
                    approved_at=now,
                    next_check_at=now + self._first_check,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            await session.refresh(payout)
            if won.rowcount == 1:  # type: ignore[attr-defined]
                await emit(session, payout, "payout.pending", payout_view)
                await audit.record(
                    session,
                    approver,
                    "payout.approved",
                    payout.id,
                    payout.merchant_id,
                    detail={"amount": str(payout.amount), "currency": payout.currency},
                )
            elif payout.approved_by is None:
                raise _conflict(payout, "approved")
            else:
                return payout_view(payout)  # approved already (by us or a concurrent twin)
        log.info("payout_approved", payout_id=payout.id, approved_by=approver)
        result = await self.send(account, payout)
        return await self.record(payout.id, result)

    async def cancel(self, payout_id: str, *, caller: Caller | None) -> dict[str, Any]:
        now = utcnow()
        async with self._sessions() as session, session.begin():
            payout = await self._scoped(session, payout_id, caller)
            won = await session.execute(
                update(Payout)
                .where(Payout.id == payout.id, Payout.status == AWAITING)
                .values(status=CANCELLED, finalized_at=now, updated_at=now, next_check_at=None)
                .execution_options(synchronize_session=False)
            )
            await session.refresh(payout)
            if won.rowcount == 1:  # type: ignore[attr-defined]
                await emit(session, payout, "payout.cancelled", payout_view)
                actor = caller.key_id if caller else "admin"
                await audit.record(
                    session, actor, "payout.cancelled", payout.id, payout.merchant_id
                )
            elif payout.status != CANCELLED:
                raise _conflict(payout, "cancelled")
            return payout_view(payout)

    async def _scoped(self, session: AsyncSession, payout_id: str, caller: Caller | None) -> Payout:
        payout = await session.get(Payout, payout_id, populate_existing=True)
        if payout is None or (
            caller is not None
            and (payout.merchant_id != caller.merchant_id or payout.mode != caller.mode)
        ):
            raise ApiError(
                404, "invalid_request_error", "resource_missing", f"No such payout: {payout_id}"
            )
        return payout

    # ----- send and record ----------------------------------------------------------------------
    async def send(self, account: ProviderAccount, payout: Payout) -> SendResult:
        """The provider call, with the payout's own provider request id (never a new one)."""
        base = callback_base(self._public_url, account)
        try:
            if account.provider == "mpesa":
                return await self._registry.mpesa(account).b2c_payment(
                    originator_conversation_id=payout.provider_request_id,
                    amount=int(payout.amount),
                    phone=payout.phone,
                    remarks=payout.reason or "Payout",
                    occasion=payout.reference,
                    result_url=f"{base}/b2c/{payout.id}",
                    queue_timeout_url=f"{base}/b2c-timeout/{payout.id}",
                )
            return await self._registry.momo(account).transfer(
                reference_id=payout.provider_request_id,
                amount=to_provider_units(payout.amount),
                currency=payout.currency,
                msisdn=payout.phone,
                external_id=payout.id,
                payer_message=payout.reason or payout.reference,
                payee_note=payout.reference,
                callback_url=f"{base}/momo-transfer/{payout.id}",
            )
        except Exception as exc:  # a bug must not lose the payout: ambiguous, never re-sent
            log.exception("payout_send_crashed", payout_id=payout.id)
            return SendResult(SendOutcome.AMBIGUOUS, error_message=type(exc).__name__)

    async def record(
        self,
        payout_id: str,
        result: SendResult,
        *,
        caller: Caller | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Store what the provider answered (and the idempotent response when ``key``)."""
        async with self._sessions() as session, session.begin():
            await record_send(
                session,
                Payout,
                payout_id,
                result,
                next_check_at=utcnow() + self._first_check,
                view=payout_view,
            )
            fresh = await session.get(Payout, payout_id, populate_existing=True)
            assert fresh is not None
            view = payout_view(fresh)
            if key is not None and caller is not None:
                await idempotency.finish(session, caller.merchant_id, key, 201, view)
        log.info(
            "payout_sent",
            payout_id=payout_id,
            outcome=result.outcome.value,
            provider_code=result.error_code,
        )
        return view


def _conflict(payout: Payout, wanted: str) -> ApiError:
    return ApiError(
        409,
        "invalid_request_error",
        "payout_not_awaiting_approval",
        f"Payout {payout.id} is {payout.status}: only a payout awaiting approval can be {wanted}",
    )
