"""Which open order a C2B account number (``BillRefNumber``) names, if any.

An *open order* of the account's merchant and mode is:

- a prompt payment still ``pending`` or ``unknown`` whose ``reference`` is the account number
  (the newest one when several are), or
- an ``active``, unexpired payment link in the account's currency whose slug (what the
  checkout shows as the account reference) or id is the account number.

A payment is tied to a link (``link_id``) only if the link could take it now, as its checkout
would: the amount is the link's fixed amount (any amount for an open-amount link), and a
single-use link is neither paid nor busy with an open payment. Otherwise a paybill payment
naming it would close a single-use link, or pay it twice, for any amount.

Matching is exact (after trimming spaces): references are the merchant's own, and slugs are
case-sensitive. Reads only; used by validation (must answer within Daraja's ~8 s) and by
confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import utcnow
from lipwa.services.links import link_state
from lipwa.services.transitions import OPEN_STATUSES
from lipwa.store.tables import Payment, PaymentLink, ProviderAccount

MODE_FOR_ENVIRONMENT = {"sandbox": "test", "production": "live"}


@dataclass(frozen=True)
class OpenOrder:
    payment_id: str | None  # the open prompt payment with this reference
    link_id: str | None  # the payment link (matched directly, or the payment's link)

    def metadata(self) -> dict[str, str]:
        found = {"matched_payment_id": self.payment_id, "link_id": self.link_id}
        return {k: v for k, v in found.items() if v}


def account_mode(account: ProviderAccount) -> str:
    return MODE_FOR_ENVIRONMENT[account.environment]


async def find_open_order(
    session: AsyncSession, account: ProviderAccount, bill_ref: str, amount: Decimal | None
) -> OpenOrder | None:
    ref = bill_ref.strip()
    if not ref or len(ref) > 100:
        return None
    mode = account_mode(account)
    payment = (
        await session.execute(
            select(Payment.id, Payment.link_id)
            .where(
                Payment.merchant_id == account.merchant_id,
                Payment.reference == ref,
                Payment.mode == mode,
                Payment.channel == "prompt",
                Payment.status.in_(OPEN_STATUSES),
            )
            .order_by(Payment.created_at.desc())
            .limit(1)
        )
    ).first()
    now = utcnow()
    link = await session.scalar(
        select(PaymentLink)
        .where(
            PaymentLink.merchant_id == account.merchant_id,
            PaymentLink.mode == mode,
            PaymentLink.status == "active",
            PaymentLink.currency == account.currency,
            or_(PaymentLink.slug == ref, PaymentLink.id == ref),
            or_(PaymentLink.expires_at.is_(None), PaymentLink.expires_at > now),
        )
        .limit(1)
    )
    if link is None and payment is not None and payment[1] is not None:
        link = await session.get(PaymentLink, payment[1])
    taken_by = link.id if link is not None and await _takes(session, link, amount) else None
    if payment is None and taken_by is None:
        return None
    return OpenOrder(payment_id=payment[0] if payment else None, link_id=taken_by)


async def _takes(session: AsyncSession, link: PaymentLink, amount: Decimal | None) -> bool:
    """Whether ``link`` could take a payment of ``amount`` now (its checkout's rules)."""
    if link.amount is not None and amount != link.amount:
        return False
    return (await link_state(session, link)).open
