"""Asking the provider whether a callback is true, before it is applied (``CallbackService``,
``MoneyCallbacks``). Neither Daraja nor MTN signs its callbacks: a status query made with the
account's own credentials is the check the go-live checklists ask for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from lipwa.providers.base import ProviderReport, QueryFailure
from lipwa.services.pacing import Pacer
from lipwa.services.providers import ProviderRegistry
from lipwa.store.tables import ProviderAccount

log = structlog.get_logger("lipwa.callbacks")

Ask = Callable[[str], Awaitable[ProviderReport | QueryFailure]]


class ProviderConfirmer:
    """Daraja STK queries, and MoMo status GETs paced with the recovery's own (MTN's 10 per
    second per account)."""

    def __init__(self, registry: ProviderRegistry, pacer: Pacer) -> None:
        self._registry = registry
        self._pacer = pacer

    async def status(
        self, account: ProviderAccount, kind: str, reference: str
    ) -> ProviderReport | None:
        """What the provider says of the resource a ``kind`` callback is about (``stk``: the
        CheckoutRequestID's STK query; ``momo``, ``momo-transfer``, ``momo-refund``: the
        X-Reference-Id's status GET); None, logged, when it cannot be asked now (the callback
        stays stored, unapplied, for the sweep)."""
        ask: Ask
        if kind == "stk":
            ask = self._registry.mpesa(account).stk_query
        else:
            await self._pacer.wait(account.id)
            client = self._registry.momo(account)
            ask = {
                "momo": client.get_request_to_pay,
                "momo-transfer": client.get_transfer,
                "momo-refund": client.get_refund,
            }[kind]
        try:
            answer = await ask(reference)
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
