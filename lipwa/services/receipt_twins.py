"""One M-Pesa transaction must not be counted as two payments.

Integrators report that Daraja also sends a paybill's C2B confirmation URL the payments made
through STK push (not stated by Safaricom). The confirmation's ``TransID`` is then the STK
payment's receipt (``MpesaReceiptNumber``):

- a confirmation whose ``TransID`` is already a payment's receipt on the account is that
  payment: no new payment is made (``c2b_inbound``);
- when the confirmation came first, its C2B payment was already made and reported to the
  merchant. Once the STK payment succeeds with that receipt, both stay (final states are
  final) and a ``receipt_recorded_twice`` anomaly on the STK payment names the twin, so an
  operator settles it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.services import anomalies
from lipwa.store.tables import Payment

KIND = "receipt_recorded_twice"


async def payment_with_receipt(session: AsyncSession, account_id: str, receipt: str) -> str | None:
    """The payment of this account whose M-Pesa receipt is ``receipt``, if any."""
    found: str | None = await session.scalar(
        select(Payment.id)
        .where(Payment.account_id == account_id, Payment.receipt == receipt)
        .limit(1)
    )
    return found


async def note_c2b_twin(session: AsyncSession, payment: Payment, receipt: str | None) -> None:
    """After an STK payment got ``receipt``: flag a C2B payment recorded for the same TransID."""
    if payment.provider != "mpesa" or payment.channel == "c2b" or not receipt:
        return
    twin: str | None = await session.scalar(
        select(Payment.id).where(
            Payment.account_id == payment.account_id,
            Payment.provider_ref == receipt,
            Payment.channel == "c2b",
        )
    )
    if twin is None:
        return
    anomalies.record(
        session,
        payment.merchant_id,
        payment.id,
        KIND,
        {
            "detail": f"receipt {receipt} was also recorded as C2B payment {twin}",
            "receipt": receipt,
            "c2b_payment_id": twin,
        },
    )
