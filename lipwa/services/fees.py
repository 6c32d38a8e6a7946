"""Fees fixed on a payment when it succeeds (called by ``transitions.apply``, same transaction).

The arithmetic is pure (``lipwa.domain.fees``); this module only reads the merchant's fee
settings and the account's kind (paybill or till). A merchant whose fee settings cannot be
read still gets its payment marked paid: the fees are then left empty (``None``), logged, and
show up as ``payments_without_fees`` in the revenue report. Money state never waits on fees.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.domain.errors import DomainError
from lipwa.domain.fees import Fees, compute_fees, platform_tariff, provider_tariff
from lipwa.store.tables import Merchant, Payment, ProviderAccount

log = structlog.get_logger("lipwa.fees")


def fees_for(
    payment: Payment, merchant_settings: dict[str, Any], account_config: dict[str, Any]
) -> Fees:
    kind = account_config.get("kind")
    return compute_fees(
        payment.amount,
        payment.currency,
        provider_tariff(
            merchant_settings, payment.provider, kind if isinstance(kind, str) else None
        ),
        platform_tariff(merchant_settings, payment.provider),
    )


async def success_fees(session: AsyncSession, payment: Payment) -> dict[str, Decimal | None]:
    """The column values ``provider_fee`` / ``platform_fee`` for ``payment`` succeeding now."""
    row = (
        await session.execute(
            select(Merchant.settings, ProviderAccount.config)
            .join(ProviderAccount, ProviderAccount.merchant_id == Merchant.id)
            .where(Merchant.id == payment.merchant_id, ProviderAccount.id == payment.account_id)
        )
    ).first()
    settings, config = (row[0] or {}, row[1] or {}) if row else ({}, {})
    try:
        fees = fees_for(payment, settings, config)
    except (DomainError, ValueError, ArithmeticError) as exc:
        log.error("fees_not_computed", payment_id=payment.id, error=str(exc))
        return {"provider_fee": None, "platform_fee": None}
    return {"provider_fee": fees.provider_fee, "platform_fee": fees.platform_fee}
