"""Collect money from a phone: validate, write ahead, send, record what the provider said."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Protocol

import stamina
import structlog
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, case, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import utcnow
from lipwa.domain.errors import DomainError
from lipwa.domain.ids import new_id
from lipwa.domain.json_object import JsonObject
from lipwa.domain.money import (
    PROVIDER_NAMES,
    check_amount,
    parse_amount,
    rule_for,
    to_provider_units,
)
from lipwa.domain.phones import Network, Phone, normalise_phone, provider_for_network
from lipwa.domain.states import PaymentStatus
from lipwa.errors import ApiError, invalid
from lipwa.providers.base import SendOutcome, SendResult
from lipwa.services import idempotency
from lipwa.services.accounts import Caller, callback_base
from lipwa.services.idempotency import Outcome, request_hash
from lipwa.services.providers import ProviderRegistry
from lipwa.services.transitions import OPEN_STATUSES, Change, add_event, apply, payment_view
from lipwa.store.tables import IdempotencyKey, Merchant, Payment, ProviderAccount

log = structlog.get_logger("lipwa.collect")

# Daraja's own field limits (daraja.md §2.1).
MPESA_ACCOUNT_REFERENCE_MAX = 12
MPESA_DESCRIPTION_MAX = 13
MOMO_MESSAGE_MAX = 160
METHOD_PATH = "POST /v1/payments"
COUNTRY_FOR_CURRENCY = {"KES": "KE", "RWF": "RW", "UGX": "UG"}


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Any = Field(description='Decimal string in the currency\'s major unit, e.g. "100".')
    currency: str = Field(min_length=3, max_length=3, examples=["KES"])
    phone: Any = Field(description="Payer's number in any common form.", examples=["0708374149"])
    reference: str = Field(min_length=1, max_length=100, description="Your own order reference.")
    description: str = Field("", max_length=255)
    account_reference: str | None = Field(
        None,
        max_length=100,
        description="What the payer's prompt shows (M-Pesa: at most 12 characters). "
        "Defaults to reference when that fits.",
    )
    country: str | None = Field(
        None, min_length=2, max_length=2, description="Country for local numbers (07…)."
    )
    metadata: JsonObject = Field(default_factory=dict)
    account_id: str | None = Field(
        None,
        max_length=40,
        description="Charge through this provider account (acct_…), e.g. a till rather than "
        "the paybill. Default: the oldest active account for the number's network, the key's "
        "environment and the currency.",
    )

    def request_digest(self) -> str:
        """What an Idempotency-Key's body is compared by. ``account_id`` counts only when
        given, so keys stored before it existed still match their retries."""
        body = self.model_dump(mode="json")
        if body["account_id"] is None:
            del body["account_id"]
        return request_hash(body)


@dataclass(frozen=True)
class Plan:
    """A validated request: everything needed to write ahead and send."""

    account: ProviderAccount
    phone: Phone
    amount: Decimal
    currency: str
    provider_reference: str
    provider_description: str


class Guard(Protocol):
    """A policy consulted before anything is written or sent (kill switches, rate limits,
    duplicate detection, circuit breakers). ``check`` raises ApiError to refuse; ``observe``
    learns the provider's answer (a circuit breaker counts failures)."""

    async def check(
        self, session: AsyncSession, caller: Caller, plan: Plan, data: PaymentIn
    ) -> None: ...

    async def observe(self, plan: Plan, result: SendResult) -> None: ...


# One more refusal for one request (a payment link still open), run after the guards.
Check = Callable[[AsyncSession], Awaitable[None]]


class CollectService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: ProviderRegistry,
        public_url: str,
        first_check_after_s: float = 20.0,
        idempotency_wait_s: float = 15.0,
        guards: Sequence[Guard] = (),
        abandoned_after_s: float = 60.0,
        prefix_overrides: Mapping[str, Network] | None = None,
    ) -> None:
        self._sessions = sessions
        self._prefixes = prefix_overrides
        self.guards: list[Guard] = list(guards)
        self._registry = registry
        self._public_url = public_url
        self._first_check = timedelta(seconds=first_check_after_s)
        self._abandoned_after = timedelta(seconds=abandoned_after_s)
        self._idempotency_wait_s = idempotency_wait_s
        self._in_flight: dict[tuple[str, str], asyncio.Event] = {}

    # ----- validation (reads only) ----------------------------------------------------------
    async def plan(self, session: AsyncSession, caller: Caller, data: PaymentIn) -> Plan:
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
                f"{phone.network.value} numbers cannot be charged: Lipwa serves M-Pesa "
                "(Safaricom) and MTN MoMo",
                "phone",
            )
        merchant = await session.get(Merchant, caller.merchant_id)
        # The identity map holds objects weakly: keep the merchant for the guards that follow.
        session.info[("merchant", caller.merchant_id)] = merchant
        if merchant is None:  # the key outlived its merchant
            raise ApiError(401, "authentication_error", "invalid_api_key", "Invalid API key")
        accounts = list(
            await session.scalars(
                select(ProviderAccount)
                .where(
                    ProviderAccount.merchant_id == caller.merchant_id,
                    ProviderAccount.provider == provider,
                    ProviderAccount.environment == caller.environment,
                    ProviderAccount.status == "active",
                )
                .order_by(ProviderAccount.created_at, ProviderAccount.id)
            )
        )
        if not accounts:
            raise invalid(
                "no_account_for_network",
                f"{phone.network.value} numbers are charged through "
                f"{PROVIDER_NAMES.get(provider, provider)} and this merchant has no active "
                f"{provider} {caller.environment} account (a {caller.mode} key uses "
                f"{caller.environment} accounts only); add one, or check the number's network "
                "with POST /v1/phone-lookup",
                "phone",
            )
        matching = [a for a in accounts if a.currency == currency]
        if not matching:
            offered = ", ".join(sorted({a.currency for a in accounts}))
            raise invalid(
                "currency_not_supported",
                f"{provider} accounts for this number take {offered}, not {currency}",
                "currency",
            )
        account = _chosen(matching, data.account_id)
        try:
            amount = parse_amount(data.amount, currency)
            check_amount(
                amount, rule_for(provider, currency, merchant.settings.get("limits")), currency
            )
        except DomainError as exc:
            raise invalid(exc.code, exc.message, exc.param or "amount") from exc
        provider_reference, provider_description = _provider_texts(provider, data)
        return Plan(account, phone, amount, currency, provider_reference, provider_description)

    # ----- the use case ---------------------------------------------------------------------
    async def create(
        self,
        caller: Caller,
        data: PaymentIn,
        idempotency_key: str,
        link_id: str | None = None,
        also_check: Check | None = None,
    ) -> Outcome:
        """``link_id``: the payment link this payment is made through, stored with it.
        ``also_check``: one more refusal, after the guards, in the same transaction."""
        # Keys live per mode: a live key reusing a test key's Idempotency-Key never sees its
        # answer (and vice versa).
        idempotency_key = f"{caller.mode}:{idempotency_key}"
        # Twins (same key) in this process wait for the first and then replay its answer, so a
        # retry storm never runs the guards (nor spends the merchant's prompt budget).
        slot = (caller.merchant_id, idempotency_key)
        first = self._in_flight.get(slot)
        if first is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(first.wait(), self._idempotency_wait_s)
            return await self._create(caller, data, idempotency_key, link_id, also_check)
        self._in_flight[slot] = done = asyncio.Event()
        try:
            return await self._create(caller, data, idempotency_key, link_id, also_check)
        finally:
            del self._in_flight[slot]
            done.set()

    async def _create(
        self,
        caller: Caller,
        data: PaymentIn,
        idempotency_key: str,
        link_id: str | None,
        also_check: Check | None,
    ) -> Outcome:
        digest = data.request_digest()
        # One transaction validates, runs the guards, claims the key and writes the payment
        # ahead of the provider call; nothing is written when anything refuses.
        async with self._sessions() as session:
            replay, claimed = await idempotency.lookup(
                session, caller.merchant_id, idempotency_key, METHOD_PATH, digest
            )
            if replay is not None:
                return replay
            payment = plan = None
            if claimed:
                abandoned = await idempotency.abandoned_answer(
                    session,
                    Payment,
                    payment_view,
                    caller.merchant_id,
                    idempotency_key,
                    self._abandoned_after,
                )
                if abandoned is not None:
                    return abandoned
            else:
                plan = await self._admit(session, caller, data, idempotency_key, also_check)
                if plan is not None:
                    payment = await self._write_ahead(
                        session, caller, data, plan, idempotency_key, digest, link_id
                    )
        if payment is None or plan is None:  # a twin holds the key: wait for its answer
            return await idempotency.wait_for_twin(
                self._sessions,
                caller.merchant_id,
                idempotency_key,
                METHOD_PATH,
                digest,
                self._idempotency_wait_s,
            )
        result = await self._send(plan, payment)
        for guard in self.guards:
            await guard.observe(plan, result)
        return await self._record(caller, payment, result, idempotency_key)

    async def _admit(
        self,
        session: AsyncSession,
        caller: Caller,
        data: PaymentIn,
        key: str,
        also_check: Check | None = None,
    ) -> Plan | None:
        """plan() then every guard; None if a twin with this key was admitted meanwhile (its
        payment may be what a guard refused): a retry with the same key never sees a refusal."""
        plan = await self.plan(session, caller, data)
        try:
            for guard in self.guards:
                await guard.check(session, caller, plan, data)
            if also_check is not None:
                await also_check(session)
        except ApiError:
            if await self._claimed(session, caller, key):
                return None
            raise
        return plan

    async def _claimed(self, session: AsyncSession, caller: Caller, key: str) -> bool:
        return await session.get(IdempotencyKey, (caller.merchant_id, key)) is not None

    async def _write_ahead(
        self,
        session: AsyncSession,
        caller: Caller,
        data: PaymentIn,
        plan: Plan,
        key: str,
        digest: str,
        link_id: str | None,
    ) -> Payment | None:
        """Claim the key and store the pending payment, committed before any provider call;
        None when a twin claimed the key first (nothing written)."""
        now = utcnow()
        account = plan.account
        request_id = str(uuid.uuid4())
        payment = Payment(
            id=new_id("pay"),
            merchant_id=caller.merchant_id,
            account_id=account.id,
            mode=caller.mode,
            provider=account.provider,
            channel="prompt",
            status=PaymentStatus.PENDING.value,
            amount=plan.amount,
            currency=plan.currency,
            phone=plan.phone.msisdn,
            network=plan.phone.network.value,
            reference=data.reference,
            description=data.description,
            provider_reference=plan.provider_reference,
            provider_description=plan.provider_description,
            meta=data.metadata,
            link_id=link_id,
            provider_request_id=request_id,
            # MoMo's reference is ours and known now; Daraja's CheckoutRequestID comes back.
            provider_ref=request_id if account.provider == "momo" else None,
            send_state="not_sent",
            check_attempts=0,
            next_check_at=now + self._first_check,
            created_at=now,
            updated_at=now,
        )
        try:
            idempotency.claim(
                session, caller.merchant_id, key, METHOD_PATH, digest, now, resource_id=payment.id
            )
            session.add(payment)
            # One flush for the key, the payment and the event; a twin's key fails it.
            await add_event(session, payment, "payment.created")
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return None
        return payment

    async def _send(self, plan: Plan, payment: Payment) -> SendResult:
        account = plan.account
        base = callback_base(self._public_url, account)
        try:
            if account.provider == "mpesa":
                return await self._registry.mpesa(account).stk_push(
                    amount=int(plan.amount),
                    phone=plan.phone.msisdn,
                    account_reference=plan.provider_reference,
                    description=plan.provider_description,
                    callback_url=f"{base}/stk/{payment.id}",
                )
            return await self._registry.momo(account).request_to_pay(
                reference_id=payment.provider_request_id,
                amount=to_provider_units(plan.amount),
                currency=plan.currency,
                msisdn=plan.phone.msisdn,
                external_id=payment.id,
                payer_message=plan.provider_description,
                payee_note=plan.provider_reference,
                callback_url=f"{base}/momo/{payment.id}",
            )
        except Exception as exc:  # a bug must not lose the payment: treat as ambiguous
            log.exception("provider_call_crashed", payment_id=payment.id)
            return SendResult(SendOutcome.AMBIGUOUS, error_message=type(exc).__name__)

    async def _record(
        self, caller: Caller, payment: Payment, result: SendResult, key: str
    ) -> Outcome:
        """Store what the provider said. Retried through a database blip (a restart): losing
        this write would lose the CheckoutRequestID and leave the payment unknown. Every step
        in it is idempotent, so running it twice is safe."""
        async for attempt in stamina.retry_context(
            on=(DBAPIError, OSError), attempts=6, timeout=20.0, wait_initial=0.2, wait_max=3.0
        ):
            with attempt:
                return await self._record_once(caller, payment, result, key)
        raise AssertionError("unreachable: stamina returns or raises")

    async def _record_once(
        self, caller: Caller, payment: Payment, result: SendResult, key: str
    ) -> Outcome:
        now = utcnow()
        async with self._sessions() as session, session.begin():
            if result.outcome is SendOutcome.REJECTED and payment.provider == "momo":
                send_state = await session.scalar(
                    select(Payment.send_state).where(Payment.id == payment.id).with_for_update()
                )
                if send_state != "not_sent":
                    # The worker re-sent it meanwhile under the same X-Reference-Id (this send
                    # took that long): our refusal speaks for our attempt only, and MTN may
                    # have the worker's. Recovery settles it; failing it could hide a payment.
                    log.warning("late_refusal_ignored", payment_id=payment.id)
                    return await self._replay_current(session, caller, payment.id, key)
            values: dict[str, Any] = {"send_state": _SEND_STATE[result.outcome], "updated_at": now}
            if result.provider_ref and payment.provider_ref is None:
                values["provider_ref"] = result.provider_ref
            if result.secondary_ref:
                values["provider_secondary_ref"] = result.secondary_ref
            if result.outcome is SendOutcome.ACCEPTED or result.provider_ref:
                # An answer that came after the worker gave up waiting for it (the payment
                # left unknown, unchecked): now it can be asked about, so ask again.
                values["next_check_at"] = case(
                    (
                        and_(
                            Payment.next_check_at.is_(None),
                            Payment.status.in_(OPEN_STATUSES),
                        ),
                        now + self._first_check,
                    ),
                    else_=Payment.next_check_at,
                )
            fresh = (
                await session.execute(
                    update(Payment)
                    .where(Payment.id == payment.id)
                    .values(**values)
                    .returning(Payment)
                    .execution_options(populate_existing=True, synchronize_session=False)
                )
            ).scalar_one()
            if result.outcome is SendOutcome.REJECTED:
                await apply(
                    session,
                    payment.id,
                    Change(
                        PaymentStatus.FAILED,
                        source="send",
                        failure_code=result.failure_code or "rejected_by_provider",
                        failure_message=result.error_message,
                        provider_code=result.error_code,
                    ),
                )
            elif result.outcome is SendOutcome.AMBIGUOUS:
                await apply(
                    session,
                    payment.id,
                    Change(
                        PaymentStatus.UNKNOWN,
                        source="send",
                        provider_code=result.error_code,
                        next_check_at=now + self._first_check,
                    ),
                )
            if result.outcome is not SendOutcome.ACCEPTED:  # apply() changed it again
                await session.refresh(fresh)
            view = payment_view(fresh)
            await idempotency.finish(session, caller.merchant_id, key, 201, view)
        log.info(
            "payment_sent",
            payment_id=payment.id,
            provider=payment.provider,
            outcome=result.outcome.value,
            provider_code=result.error_code,
        )
        return Outcome(201, view)

    async def _replay_current(
        self, session: AsyncSession, caller: Caller, payment_id: str, key: str
    ) -> Outcome:
        """Answer with the payment as it stands (and keep that as the key's answer)."""
        current = await session.get(Payment, payment_id, populate_existing=True)
        assert current is not None
        view = payment_view(current)
        await idempotency.finish(session, caller.merchant_id, key, 201, view)
        return Outcome(201, view)


_SEND_STATE = {
    SendOutcome.ACCEPTED: "sent",
    SendOutcome.REJECTED: "rejected",
    SendOutcome.AMBIGUOUS: "ambiguous",
}


def _chosen(accounts: list[ProviderAccount], account_id: str | None) -> ProviderAccount:
    """The account asked for, or the oldest; ``accounts`` are the usable ones, oldest first."""
    if account_id is None:
        return accounts[0]
    for account in accounts:
        if account.id == account_id:
            return account
    usable = ", ".join(a.id for a in accounts)
    raise invalid(
        "account_not_usable",
        f"{account_id} cannot charge this number: it is not an active account of yours for "
        f"its network, this key's environment and the currency (usable: {usable})",
        "account_id",
    )


def _provider_texts(provider: str, data: PaymentIn) -> tuple[str, str]:
    """What the payer's prompt shows; Daraja's limits are enforced visibly, never silently."""
    if provider == "mpesa":
        account_reference = data.account_reference or data.reference
        if len(account_reference) > MPESA_ACCOUNT_REFERENCE_MAX:
            param = "account_reference" if data.account_reference else "reference"
            raise invalid(
                "account_reference_too_long",
                f"M-Pesa shows at most {MPESA_ACCOUNT_REFERENCE_MAX} characters of the account "
                f"reference and {param} has {len(account_reference)}: send account_reference "
                f"(at most {MPESA_ACCOUNT_REFERENCE_MAX} characters) for the prompt",
                param,
            )
        # TransactionDesc is cut to Daraja's 13 characters; the response shows what was sent.
        description = (data.description or data.reference)[:MPESA_DESCRIPTION_MAX]
        return account_reference, description
    # MoMo refuses apostrophes and messages over 160 characters.
    reference = (data.account_reference or data.reference).replace("'", "")[:MOMO_MESSAGE_MAX]
    description = (data.description or data.reference).replace("'", "")[:MOMO_MESSAGE_MAX]
    return reference, description
