"""Rate limits on top of the ``limits`` library: per API key and per merchant.

Strategy: moving window. It is exact at window edges (a "10 per 5 minutes" limit never lets
20 prompts through around a boundary, as a fixed window would), its cost is one list of at most
``amount`` timestamps per key (our limits are small), and on Redis each hit is one atomic Lua
script, so any number of API processes sharing ``LIPWA_REDIS_URL`` share one exact budget.
Without Redis the counters live in the process (one process: exact; several: per process).

If Redis is unreachable the limiter fails open (logs ``rate_limit_storage_unavailable`` and
counts ``lipwa_rate_limit_storage_errors_total``; the ``LipwaRateLimitStorageDown`` alert fires):
payments keep flowing and the provider's own throttling still stands behind us.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache
from typing import Any

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.config import Settings
from lipwa.domain.policy import GuardPolicy, policy_for
from lipwa.errors import ApiError
from lipwa.metrics import GUARD_REFUSALS, RATE_LIMIT_HITS, RATE_LIMIT_STORAGE_ERRORS
from lipwa.providers.base import SendResult
from lipwa.services.accounts import Caller
from lipwa.services.collect import PaymentIn, Plan
from lipwa.store.tables import Merchant

log = structlog.get_logger("lipwa.ratelimit")


@lru_cache(maxsize=256)
def _item(rate: str) -> RateLimitItem:
    return parse(rate)


def _async_uri(redis_url: str) -> str:
    return redis_url if redis_url.startswith("async+") else f"async+{redis_url}"


def rate_limit_error(
    limit: str,
    code: str,
    message: str,
    retry_after: int,
    param: str | None = None,
    extra: dict[str, Any] | None = None,
) -> ApiError:
    """A 429 with ``Retry-After``; counts the hit in ``lipwa_rate_limit_hits_total{limit}``."""
    RATE_LIMIT_HITS.labels(limit=limit).inc()
    return ApiError(
        429,
        "rate_limit_error",
        code,
        message,
        param,
        headers={"Retry-After": str(retry_after)},
        extra=extra,
    )


class RateLimits:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)

    @property
    def shared_storage(self) -> Storage | None:
        """The Redis storage every process shares, or None when counters live in memory."""
        return None if isinstance(self._storage, MemoryStorage) else self._storage

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        if settings.redis_url:
            return cls(
                RedisStorage(
                    _async_uri(settings.redis_url),
                    implementation="redispy",
                    key_prefix=settings.redis_key_prefix,
                    wrap_exceptions=True,
                )
            )
        return cls(MemoryStorage(wrap_exceptions=True))

    async def consume(self, name: str, rate: str, *ids: str) -> int | None:
        """Take one from the ``name`` budget of ``ids``: None if allowed, else the seconds
        until one frees up (at least 1)."""
        item = _item(rate)
        try:
            if await self._limiter.hit(item, name, *ids):
                return None
            stats = await self._limiter.get_window_stats(item, name, *ids)
        except StorageError:
            RATE_LIMIT_STORAGE_ERRORS.inc()
            log.error("rate_limit_storage_unavailable", limit=name, exc_info=True)
            return None
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def close(self) -> None:
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        if client is not None:
            await client.aclose()


async def check_api_key(limits: RateLimits, rate: str, caller: Caller) -> None:
    """Refuse a request over the per-key budget (``LIPWA_RATE_LIMIT_API_KEY``)."""
    retry = await limits.consume("api_key", rate, caller.key_id)
    if retry is not None:
        raise rate_limit_error(
            "api_key",
            "rate_limited",
            f"Too many requests with this API key (limit {rate}); retry in {retry} s",
            retry,
        )


async def load_merchant(session: AsyncSession, caller: Caller) -> Merchant:
    """The caller's merchant (from the session's identity map: plan() loaded it already)."""
    merchant = session.info.get(("merchant", caller.merchant_id))
    if merchant is None:
        merchant = await session.get(Merchant, caller.merchant_id)
    if merchant is None:  # plan() already refused; keep the guards total
        raise ApiError(401, "authentication_error", "invalid_api_key", "Invalid API key")
    return merchant


async def merchant_policy(
    session: AsyncSession, caller: Caller, defaults: GuardPolicy
) -> GuardPolicy:
    """``defaults`` with the merchant's overrides (a bad override is a 400 naming it)."""
    return policy_for(defaults, (await load_merchant(session, caller)).settings)


class MerchantPromptGuard:
    """STK prompts / requests-to-pay per merchant and mode (default 10 per 5 minutes).

    The last guard: only a request every other guard admitted spends the budget."""

    def __init__(self, limits: RateLimits, defaults: GuardPolicy) -> None:
        self._limits = limits
        self._defaults = defaults

    async def check(
        self, session: AsyncSession, caller: Caller, plan: Plan, data: PaymentIn
    ) -> None:
        policy = await merchant_policy(session, caller, self._defaults)
        retry = await self._limits.consume(
            "prompts", policy.prompts, caller.merchant_id, caller.mode
        )
        if retry is not None:
            GUARD_REFUSALS.labels(code="rate_limited").inc()
            raise rate_limit_error(
                "merchant_prompts",
                "rate_limited",
                f"Too many payment prompts for this merchant (limit {policy.prompts}); "
                f"retry in {retry} s",
                retry,
            )

    async def observe(self, plan: Plan, result: SendResult) -> None:
        return None
