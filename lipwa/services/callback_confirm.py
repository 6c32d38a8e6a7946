"""Asking MTN whether a MoMo callback is true, before it is applied (``CallbackService``,
``MoneyCallbacks``)."""

from __future__ import annotations

from lipwa.providers.base import ProviderReport, QueryFailure
from lipwa.services.pacing import Pacer
from lipwa.services.providers import ProviderRegistry
from lipwa.store.tables import ProviderAccount


class ProviderConfirmer:
    """Status GETs paced with the recovery's own (MTN's 10 per second per account)."""

    def __init__(self, registry: ProviderRegistry, pacer: Pacer) -> None:
        self._registry = registry
        self._pacer = pacer

    async def momo_status(
        self, account: ProviderAccount, reference_id: str
    ) -> ProviderReport | QueryFailure:
        await self._pacer.wait(account.id)
        try:
            return await self._registry.momo(account).get_request_to_pay(reference_id)
        except Exception as exc:  # a bug must not lose the callback: it stays for the sweep
            return QueryFailure("internal_error", type(exc).__name__)

    async def momo_money_status(
        self, account: ProviderAccount, kind: str, reference_id: str
    ) -> ProviderReport | QueryFailure:
        """``kind``: ``momo-transfer`` (a payout) or ``momo-refund``."""
        await self._pacer.wait(account.id)
        client = self._registry.momo(account)
        try:
            if kind == "momo-transfer":
                return await client.get_transfer(reference_id)
            return await client.get_refund(reference_id)
        except Exception as exc:  # a bug must not lose the callback: it stays for the sweep
            return QueryFailure("internal_error", type(exc).__name__)
