"""C2B in: Daraja's validation and confirmation requests for a paybill/till account.

Both are stored raw first (``inbound.store_inbound``), like every callback.

Validation (``/callbacks/<token>/c2b-validate``) must be answered within about 8 s: it reads
only the database (the merchant's rules in the account config, open orders) and never calls a
provider. If no decision can be made in ``VALIDATION_BUDGET_S`` (database down or locked) the
answer is HTTP 503 without a ``ResultCode``: Daraja then applies the ``ResponseType``
registered with the URLs, which is exactly the merchant's chosen default.

Confirmation (``/callbacks/<token>/c2b-confirm``) becomes one payment with channel ``c2b``,
idempotent on the TransID (``provider_ref``, unique per account: a repeated confirmation is a
no-op). The payment is written ``pending`` with its ``payment.created`` event and moved to
``succeeded`` through ``transitions.apply`` in the same transaction (fees, metrics, the
``payment.succeeded`` event and webhooks as for any payment); nobody ever reads it pending.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import utcnow
from lipwa.domain import c2b as rules
from lipwa.domain.errors import DomainError
from lipwa.domain.ids import new_id
from lipwa.domain.money import format_amount
from lipwa.domain.phones import Network
from lipwa.domain.states import PaymentStatus
from lipwa.providers.mpesa.c2b import C2bNotice, parse_notice, validation_reply
from lipwa.services import inbound
from lipwa.services.c2b_orders import OpenOrder, account_mode, find_open_order
from lipwa.services.receipt_twins import payment_with_receipt
from lipwa.services.transitions import Change, add_event, apply
from lipwa.services.unconfirmed import due_callbacks
from lipwa.store.tables import InboundCallback, Payment, ProviderAccount

log = structlog.get_logger("lipwa.c2b")

VALIDATE, CONFIRM = "c2b-validate", "c2b-confirm"
KINDS = (VALIDATE, CONFIRM)
VALIDATION_BUDGET_S = 5.0
BUY_GOODS_TYPES = frozenset({"buygoods", "customerbuygoodsonline"})
PHONE_MAX = 20  # Payment.phone


@dataclass(frozen=True)
class ValidationAnswer:
    status: int  # HTTP status
    body: dict[str, str]


def _shortcodes(account: ProviderAccount) -> set[str]:
    config = account.config
    return {str(v) for v in (config.get("shortcode"), config.get("till_number")) if v}


def _has_account_number(account: ProviderAccount, notice: C2bNotice) -> bool:
    if notice.transaction_type.replace(" ", "").lower() in BUY_GOODS_TYPES:
        return False
    return account.config.get("kind") != "till"


class C2bInbound:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    # ----- validation ---------------------------------------------------------------------------
    async def validate(self, request: inbound.Inbound) -> ValidationAnswer:
        try:
            return await asyncio.wait_for(self._validate(request), VALIDATION_BUDGET_S)
        except Exception:  # includes the timeout: let Daraja apply the registered ResponseType
            log.exception("c2b_validation_undecided")
            return ValidationAnswer(
                503, {"ResultDesc": "Validation unavailable: the registered ResponseType applies"}
            )

    async def _validate(self, request: inbound.Inbound) -> ValidationAnswer:
        stored = await inbound.store_inbound(self._sessions, request)
        async with self._sessions() as session, session.begin():
            row = await session.get(InboundCallback, stored.callback_id)
            assert row is not None
            verdict = await self._verdict(session, row, stored.account_id)
            inbound.mark(
                row,
                "accepted" if verdict.accepted else "rejected",
                f"{verdict.code}: {verdict.reason}",
            )
        log.info("c2b_validation", callback_id=stored.callback_id, code=verdict.code)
        return ValidationAnswer(200, validation_reply(verdict.code))

    async def _verdict(
        self, session: AsyncSession, row: InboundCallback, account_id: str | None
    ) -> rules.Verdict:
        account = await session.get(ProviderAccount, account_id) if account_id else None
        if account is None or account.provider != "mpesa":
            return rules.Verdict(rules.OTHER_ERROR, "no M-Pesa account has this callback token")
        if account.status != "active":
            return rules.Verdict(rules.OTHER_ERROR, f"the account is {account.status}")
        notice = parse_notice(inbound.json_body(row))
        if notice is None:
            return rules.Verdict(rules.OTHER_ERROR, "body is not a C2B validation request")
        if notice.shortcode and notice.shortcode not in _shortcodes(account):
            return rules.Verdict(
                rules.INVALID_SHORTCODE,
                f"BusinessShortCode {notice.shortcode} is not this account's",
            )
        try:
            merchant_rules = rules.parse_rules(account.config.get("c2b"))
        except DomainError as exc:  # stored by an older version or by hand: fail closed
            return rules.Verdict(rules.OTHER_ERROR, f"the account's c2b rules are invalid: {exc}")
        has_account = _has_account_number(account, notice)
        order = (
            await find_open_order(session, account, notice.bill_ref, notice.amount)
            if has_account
            else None
        )
        return rules.decide(
            merchant_rules,
            amount=notice.amount,
            bill_ref=notice.bill_ref,
            has_account_number=has_account,
            matches_open_order=order is not None,
        )

    # ----- confirmation -------------------------------------------------------------------------
    async def confirm(self, request: inbound.Inbound) -> str:
        """Store, then apply; the caller answers Daraja once this returns or raises after the
        store (a failed apply is left for the sweep)."""
        stored = await inbound.store_inbound(self._sessions, request)
        try:
            return await self.process(stored.callback_id)
        except Exception:
            log.exception("c2b_confirmation_apply_failed", callback_id=stored.callback_id)
            return "deferred"

    async def process(self, callback_id: int) -> str:
        """Apply one stored confirmation (or close a stale validation row); idempotent."""
        async with self._sessions() as session, session.begin():
            row = await session.get(InboundCallback, callback_id)
            if row is None:
                return "missing"
            if row.processed_at is not None:
                return row.outcome or "noop"
            if row.kind == VALIDATE:  # the process stopped before answering it
                inbound.mark(row, "noop", "validation left undecided; Daraja applied ResponseType")
                return "noop"
            outcome, detail = await self._confirm(session, row)
            inbound.mark(row, outcome, detail)
        log.info("c2b_confirmation", callback_id=callback_id, outcome=outcome)
        return outcome

    async def _confirm(self, session: AsyncSession, row: InboundCallback) -> tuple[str, str | None]:
        account = await session.get(ProviderAccount, row.account_id) if row.account_id else None
        if account is None or account.provider != "mpesa":
            return "forged", "no M-Pesa account has this callback token"
        notice = parse_notice(inbound.json_body(row))
        if notice is None:
            return "invalid", "body is not a C2B confirmation"
        if notice.shortcode and notice.shortcode not in _shortcodes(account):
            return "invalid", f"BusinessShortCode {notice.shortcode} is not this account's"
        existing = await session.scalar(
            select(Payment.id).where(
                Payment.account_id == account.id, Payment.provider_ref == notice.trans_id
            )
        )
        if existing is not None:
            row.payment_id = existing
            return "noop", f"TransID {notice.trans_id} already recorded"
        paid_by_prompt = await payment_with_receipt(session, account.id, notice.trans_id)
        if paid_by_prompt is not None:  # an STK push's own payment, confirmed here too
            row.payment_id = paid_by_prompt
            return "noop", f"TransID {notice.trans_id} is the receipt of {paid_by_prompt}"
        amount = _amount(notice, account.currency)
        if amount is None:
            return (
                "invalid",
                f"TransAmount {notice.amount_text[:20]!r} is not a {account.currency} amount",
            )
        has_account = _has_account_number(account, notice)
        order = None
        if has_account:
            order = await find_open_order(session, account, notice.bill_ref, amount)
        payment = _payment(account, notice, amount, order)
        try:
            async with session.begin_nested():
                session.add(payment)
                await session.flush()
        except IntegrityError:  # the same TransID, recorded concurrently
            return "noop", f"TransID {notice.trans_id} already recorded"
        row.payment_id = payment.id
        await add_event(session, payment, "payment.created")
        decision = await apply(
            session,
            payment.id,
            Change(
                PaymentStatus.SUCCEEDED,
                source="callback",
                receipt=notice.trans_id,
                provider_code="0",
            ),
        )
        return decision.value, None

    # ----- the sweep of rows a crashed process left -------------------------------------------
    async def sweep(self, older_than_s: float = 5.0) -> int:
        handled = 0
        for callback_id in await due_callbacks(self._sessions, KINDS, older_than_s):
            try:
                await self.process(callback_id)
            except Exception:  # stays unprocessed: the next sweep tries again
                log.exception("c2b_sweep_failed", callback_id=callback_id)
                continue
            handled += 1
        return handled


def _amount(notice: C2bNotice, currency: str) -> Decimal | None:
    amount = notice.amount
    if amount is None:
        return None
    try:
        format_amount(amount, currency)
    except ValueError:
        return None
    return amount


def _payment(
    account: ProviderAccount, notice: C2bNotice, amount: Decimal, order: OpenOrder | None
) -> Payment:
    now = utcnow()
    meta: dict[str, str] = {
        "source": "c2b",
        "bill_ref_number": notice.bill_ref,
        "transaction_type": notice.transaction_type,
        "trans_time": notice.trans_time,
        "msisdn": notice.msisdn,
        "payer_name": notice.payer_name,
        "org_account_balance": notice.org_account_balance,
        "invoice_number": notice.invoice_number,
        "third_party_trans_id": notice.third_party_trans_id,
    }
    meta = {k: v for k, v in meta.items() if v}
    if order is not None:
        meta.update(order.metadata())
    kind = notice.transaction_type or (
        "Buy Goods" if account.config.get("kind") == "till" else "Pay Bill"
    )
    return Payment(
        id=new_id("pay"),
        merchant_id=account.merchant_id,
        account_id=account.id,
        mode=account_mode(account),
        provider="mpesa",
        channel="c2b",
        status=PaymentStatus.PENDING.value,
        amount=amount,
        currency=account.currency,
        # Masked by Safaricom ("2547 ***** 126"); a longer value (a hash) stays in metadata.
        phone=notice.msisdn if len(notice.msisdn) <= PHONE_MAX else "",
        network=Network.SAFARICOM.value,
        reference=notice.bill_ref,
        description=f"M-Pesa {kind}"[:255],
        provider_reference=notice.bill_ref,
        provider_description="",
        meta=meta,
        provider_request_id=notice.trans_id,
        provider_ref=notice.trans_id,
        send_state="sent",  # the payer sent it; nothing for recovery to do
        check_attempts=0,
        next_check_at=None,
        link_id=order.link_id if order else None,
        created_at=now,
        updated_at=now,
    )
