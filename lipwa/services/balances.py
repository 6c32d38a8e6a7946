"""``GET /v1/balances``: the balances of each active provider account of the caller's mode.

- MoMo answers synchronously (``GET /{product}/v1_0/account/balance`` for collection and, with
  a disbursement key, disbursement).
- M-Pesa answers asynchronously: an Account Balance request goes out with ResultURL
  ``/callbacks/<token>/balance/<snapshot id>``, a ``requested`` snapshot is stored first, and
  the Result completes it later (``balance_snapshots.BalanceResults``).

Answers are cached: a snapshot received less than ``cache_s`` (60 s) ago is served as is.
Otherwise a new one is asked for (an M-Pesa request still in flight, younger than
``in_flight_s``, is waited for instead of sending another) and M-Pesa's result is waited for up
to ``wait_s`` (5 s); without it the account is answered ``"status": "pending"`` with the
last balances known. No database session is held across a provider call.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import isoformat, utcnow
from lipwa.providers.base import QueryFailure, SendOutcome
from lipwa.providers.momo.account import MomoBalance
from lipwa.providers.momo.credentials import COLLECTION, DISBURSEMENT
from lipwa.services import balance_snapshots as snapshots
from lipwa.services.accounts import Caller, callback_base
from lipwa.services.providers import ProviderRegistry
from lipwa.store.tables import BalanceSnapshot, ProviderAccount

log = structlog.get_logger("lipwa.balances")

AVAILABLE, PENDING, FAILED = "available", "pending", "failed"


def balance_view(
    account: ProviderAccount,
    status: str,
    shown: BalanceSnapshot | None,
    *,
    cached: bool = False,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "object": "balance",
        "account_id": account.id,
        "provider": account.provider,
        "label": account.label,
        "status": status,
        "balances": list(shown.balances or []) if shown else [],
        "as_of": isoformat(shown.received_at) if shown else None,
        "snapshot_id": shown.id if shown else None,
        "cached": cached,
        "error": error,
    }


class BalanceService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: ProviderRegistry,
        public_url: str,
        *,
        cache_s: float = 60.0,
        wait_s: float = 5.0,
        in_flight_s: float = 30.0,
        poll_s: float = 0.1,
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._public_url = public_url.rstrip("/")
        self._cache = timedelta(seconds=cache_s)
        self._wait_s = wait_s
        self._in_flight = timedelta(seconds=in_flight_s)
        self._poll_s = poll_s

    async def balances(self, caller: Caller, refresh: bool = False) -> dict[str, Any]:
        async with self._sessions() as session:
            accounts = list(
                await session.scalars(
                    select(ProviderAccount)
                    .where(
                        ProviderAccount.merchant_id == caller.merchant_id,
                        ProviderAccount.environment == caller.environment,
                        ProviderAccount.status == "active",
                    )
                    .order_by(ProviderAccount.created_at)
                )
            )
        data = await asyncio.gather(*(self._one(a, refresh) for a in accounts))
        return {"object": "list", "data": list(data)}

    async def _one(self, account: ProviderAccount, refresh: bool) -> dict[str, Any]:
        try:
            if not refresh:
                async with self._sessions() as session:
                    fresh = await snapshots.latest(
                        session, account.id, "received", utcnow() - self._cache
                    )
                if fresh is not None:
                    return balance_view(account, AVAILABLE, fresh, cached=True)
            if account.provider == "mpesa":
                return await self._mpesa(account)
            return await self._momo(account)
        except Exception:
            log.exception("balance_failed", account_id=account.id)
            return await self._failed(account, "internal error while reading the balance")

    async def _known(self, account: ProviderAccount) -> BalanceSnapshot | None:
        async with self._sessions() as session:
            return await snapshots.latest(session, account.id, "received")

    async def _failed(self, account: ProviderAccount, error: str) -> dict[str, Any]:
        return balance_view(account, FAILED, await self._known(account), error=error)

    # ----- M-Pesa: asynchronous -----------------------------------------------------------------
    async def _mpesa(self, account: ProviderAccount) -> dict[str, Any]:
        async with self._sessions() as session:
            flying = await snapshots.latest(
                session, account.id, "requested", utcnow() - self._in_flight
            )
        snapshot_id = flying.id if flying else await self._ask_mpesa(account)
        if snapshot_id is None:
            return await self._failed(account, "the balance request could not be sent")
        done = await self._wait(snapshot_id)
        if done is not None and done.status == "received":
            return balance_view(account, AVAILABLE, done)
        if done is not None and done.status == "failed":
            return await self._failed(account, done.error or "failed")
        return balance_view(account, PENDING, await self._known(account))

    async def _ask_mpesa(self, account: ProviderAccount) -> str | None:
        snapshot = await snapshots.create(
            self._sessions,
            merchant_id=account.merchant_id,
            account_id=account.id,
            status="requested",
        )
        base = callback_base(self._public_url, account)
        result = await self._registry.mpesa(account).account_balance(
            result_url=f"{base}/balance/{snapshot.id}",
            queue_timeout_url=f"{base}/balance-timeout/{snapshot.id}",
        )
        if result.outcome is SendOutcome.REJECTED:
            await snapshots.fail(
                self._sessions,
                snapshot.id,
                f"{result.error_code or 'rejected'}: {result.error_message or ''}".strip(),
            )
        elif result.provider_ref:
            await snapshots.set_provider_ref(self._sessions, snapshot.id, result.provider_ref)
        return snapshot.id

    async def _wait(self, snapshot_id: str) -> BalanceSnapshot | None:
        """The snapshot once it is no longer ``requested``, or as it is after ``wait_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        while True:
            async with self._sessions() as session:
                snapshot = await session.get(BalanceSnapshot, snapshot_id)
            if snapshot is None or snapshot.status != "requested" or loop.time() >= deadline:
                return snapshot
            await asyncio.sleep(self._poll_s)

    # ----- MoMo: synchronous --------------------------------------------------------------------
    async def _momo(self, account: ProviderAccount) -> dict[str, Any]:
        client = self._registry.momo(account)
        products = [p for p in (COLLECTION, DISBURSEMENT) if client.supports(p)]
        try:
            answers = await asyncio.wait_for(
                asyncio.gather(*(client.account_balance(p) for p in products)), self._wait_s
            )
        except TimeoutError:
            return await self._failed(account, f"MoMo did not answer within {self._wait_s:g} s")
        found = [a for a in answers if isinstance(a, MomoBalance)]
        errors = [
            f"{a.error_code}: {a.error_message}" for a in answers if isinstance(a, QueryFailure)
        ]
        if not found:
            return await self._failed(account, "; ".join(errors) or "no MoMo product to ask")
        lines = [
            {
                "account": b.product,
                "currency": b.currency,
                "available": snapshots.amount_text(b.available, b.currency),
            }
            for b in found
        ]
        snapshot = await snapshots.create(
            self._sessions,
            merchant_id=account.merchant_id,
            account_id=account.id,
            status="received",
            balances=lines,
            error="; ".join(errors) or None,
        )
        return balance_view(account, AVAILABLE, snapshot, error="; ".join(errors) or None)
