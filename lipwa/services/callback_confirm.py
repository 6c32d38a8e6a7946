"""Asking MTN whether a MoMo callback is true, before it is applied (``CallbackService``,
``MoneyCallbacks``)."""

from __future__ import annotations

import structlog

from lipwa.providers.base import ProviderReport, QueryFailure
from lipwa.services.pacing import Pacer
from lipwa.services.providers import ProviderRegistry
from lipwa.store.tables import ProviderAccount

log = structlog.get_logger("lipwa.callbacks")


class ProviderConfirmer:
    """Status GETs paced with the recovery's own (MTN's 10 per second per account)."""

    def __init__(self, registry: ProviderRegistry, pacer: Pacer) -> None:
        self._registry = registry
        self._pacer = pacer

    async def momo_status(
        self, account: ProviderAccount, kind: str, reference_id: str
    ) -> ProviderReport | None:
        """What MTN says of the resource a ``kind`` callback (``momo``, ``momo-transfer``,
        ``momo-refund``) is about; None, logged, when MTN cannot be asked now (the callback
        stays stored, unapplied, for the sweep)."""
        await self._pacer.wait(account.id)
        client = self._registry.momo(account)
        ask = {
            "momo": client.get_request_to_pay,
            "momo-transfer": client.get_transfer,
            "momo-refund": client.get_refund,
        }[kind]
        try:
            answer = await ask(reference_id)
        except Exception as exc:  # a bug must not lose the callback
            answer = QueryFailure("internal_error", type(exc).__name__)
        if isinstance(answer, QueryFailure):
            log.warning(
                "callback_unconfirmed",
                kind=kind,
                account_id=account.id,
                error_code=answer.error_code,
                http_status=answer.http_status,
            )
            return None
        return answer
