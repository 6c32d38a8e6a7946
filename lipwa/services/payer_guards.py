"""Guards that look at the payer's recent payments (reads only, before any write or call).

- ``PayerGuard``: one open prompt per payer phone (a ``pending``/``unknown`` payment of the same
  merchant younger than ``payer_lock_s``: the provider's subscriber lock, M-Pesa 1001), and for
  M-Pesa Daraja's rule that the same phone and amount within ``same_amount_s`` is refused.
- ``DuplicateGuard``: same phone, amount, currency and reference within ``duplicate_window_s``
  with a payment that did not fail → 409 ``duplicate_payment`` naming the original.
- ``DailyLimitGuard``: the payer's non-failed total today (their market's day) plus this amount
  must stay within the daily limit per payer (``lipwa.domain.payer_limits``).

All scope to one merchant and one mode (test payments never count against live ones) and use
the (merchant_id, phone, created_at) index.

They read, then the payment is written: two requests for one payer racing in the same
milliseconds could both pass. ``PayerTurn`` runs first and makes them take turns: on
PostgreSQL a transaction-scoped advisory lock per payer, held until the admission transaction
ends (the write-ahead commit, or the rollback of a refusal), so the second request sees the
first one's payment. SQLite needs none: every transaction there begins IMMEDIATE, one writer at
a time (``lipwa.store.db``).
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import utcnow
from lipwa.domain.errors import DomainError
from lipwa.domain.payer_limits import check_daily_total, daily_limit_for, day_start
from lipwa.domain.policy import GuardPolicy
from lipwa.domain.states import PaymentStatus
from lipwa.errors import ApiError, invalid
from lipwa.metrics import GUARD_REFUSALS
from lipwa.providers.base import SendResult
from lipwa.services.accounts import Caller
from lipwa.services.collect import PaymentIn, Plan
from lipwa.services.ratelimit import load_merchant, merchant_policy, rate_limit_error
from lipwa.store.tables import Payment

OPEN_STATUSES = (PaymentStatus.PENDING.value, PaymentStatus.UNKNOWN.value)
FAILED = PaymentStatus.FAILED.value


def _seconds_left(created_at: datetime, window_s: float, now: datetime) -> int:
    left = (created_at + timedelta(seconds=window_s) - now).total_seconds()
    return max(1, math.ceil(left))


def _payer(caller: Caller, plan: Plan) -> ColumnElement[bool]:
    return and_(
        Payment.merchant_id == caller.merchant_id,
        Payment.mode == caller.mode,
        Payment.phone == plan.phone.msisdn,
    )


class _NoObserve:
    async def observe(self, plan: Plan, result: SendResult) -> None:
        return None


def turn_key(purpose: str, caller: Caller, subject: str) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock, one per purpose, merchant, mode and
    subject (a phone, a payment link)."""
    digest = hashlib.blake2b(
        f"{purpose}|{caller.merchant_id}|{caller.mode}|{subject}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


async def take_turn(session: AsyncSession, purpose: str, caller: Caller, subject: str) -> None:
    """Wait until no other transaction holds this subject's turn, then hold it until this
    transaction ends (PostgreSQL; SQLite transactions already take turns)."""
    if session.get_bind().dialect.name == "postgresql":
        key = turn_key(purpose, caller, subject)
        await session.execute(select(func.pg_advisory_xact_lock(key)))


class PayerTurn(_NoObserve):
    async def check(
        self, session: AsyncSession, caller: Caller, plan: Plan, data: PaymentIn
    ) -> None:
        await take_turn(session, "payer", caller, plan.phone.msisdn)


class PayerGuard(_NoObserve):
    def __init__(self, defaults: GuardPolicy) -> None:
        self._defaults = defaults

    async def check(
        self, session: AsyncSession, caller: Caller, plan: Plan, data: PaymentIn
    ) -> None:
        policy = await merchant_policy(session, caller, self._defaults)
        now = utcnow()
        if policy.payer_lock_s > 0:
            since = now - timedelta(seconds=policy.payer_lock_s)
            open_ = (
                await session.execute(
                    select(Payment.id, Payment.created_at)
                    .where(_payer(caller, plan), Payment.created_at >= since)
                    .where(Payment.status.in_(OPEN_STATUSES))
                    .order_by(Payment.created_at.desc())
                    .limit(1)
                )
            ).first()
            if open_ is not None:
                retry = _seconds_left(open_.created_at, policy.payer_lock_s, now)
                GUARD_REFUSALS.labels(code="payer_busy").inc()
                raise rate_limit_error(
                    "payer_busy",
                    "payer_busy",
                    f"This payer already has an open payment prompt from you ({open_.id}); "
                    f"wait until it is answered, or retry in {retry} s",
                    retry,
                    param="phone",
                    extra={"payment_id": open_.id},
                )
        if plan.account.provider == "mpesa" and policy.same_amount_s > 0:
            since = now - timedelta(seconds=policy.same_amount_s)
            same = (
                await session.execute(
                    select(Payment.id, Payment.created_at)
                    .where(_payer(caller, plan), Payment.created_at >= since)
                    .where(Payment.provider == "mpesa", Payment.amount == plan.amount)
                    .where(Payment.send_state != "rejected")  # never reached the payer
                    .order_by(Payment.created_at.desc())
                    .limit(1)
                )
            ).first()
            if same is not None:
                retry = _seconds_left(same.created_at, policy.same_amount_s, now)
                GUARD_REFUSALS.labels(code="same_amount_too_soon").inc()
                raise rate_limit_error(
                    "same_amount",
                    "same_amount_too_soon",
                    f"M-Pesa refuses the same amount to the same phone within "
                    f"{policy.same_amount_s:g} s (previous: {same.id}); retry in {retry} s "
                    "or change the amount",
                    retry,
                    param="amount",
                    extra={"payment_id": same.id},
                )


class DuplicateGuard(_NoObserve):
    def __init__(self, defaults: GuardPolicy) -> None:
        self._defaults = defaults

    async def check(
        self, session: AsyncSession, caller: Caller, plan: Plan, data: PaymentIn
    ) -> None:
        policy = await merchant_policy(session, caller, self._defaults)
        if policy.duplicate_window_s <= 0:
            return
        now = utcnow()
        since = now - timedelta(seconds=policy.duplicate_window_s)
        original = (
            await session.execute(
                select(Payment.id, Payment.created_at)
                .where(_payer(caller, plan), Payment.created_at >= since)
                .where(
                    Payment.amount == plan.amount,
                    Payment.currency == plan.currency,
                    Payment.reference == data.reference,
                    Payment.status != FAILED,
                )
                .order_by(Payment.created_at.desc())
                .limit(1)
            )
        ).first()
        if original is None:
            return
        GUARD_REFUSALS.labels(code="duplicate_payment").inc()
        ago = max(0, math.floor((now - original.created_at).total_seconds()))
        raise ApiError(
            409,
            "invalid_request_error",
            "duplicate_payment",
            f"{original.id} asked this phone for the same amount with the same reference "
            f"{ago} s ago. To retry safely resend with the same Idempotency-Key; for a new "
            "charge use a new reference.",
            "reference",
            extra={"payment_id": original.id},
        )


class DailyLimitGuard(_NoObserve):
    async def check(
        self, session: AsyncSession, caller: Caller, plan: Plan, data: PaymentIn
    ) -> None:
        merchant = await load_merchant(session, caller)
        try:
            limit = daily_limit_for(plan.currency, merchant.settings.get("limits"))
            if limit is None:
                return
            spent = await session.scalar(
                select(func.sum(Payment.amount)).where(
                    _payer(caller, plan),
                    Payment.created_at >= day_start(utcnow(), plan.currency),
                    Payment.currency == plan.currency,
                    Payment.status != FAILED,
                )
            )
            check_daily_total(Decimal(str(spent or 0)), plan.amount, limit, plan.currency)
        except DomainError as exc:
            GUARD_REFUSALS.labels(code=exc.code).inc()
            raise invalid(exc.code, exc.message, exc.param) from exc
