"""The app container: everything long-lived that a process needs, built once, closed once."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lipwa.config import Settings
from lipwa.providers.shared_tokens import SharedTokens
from lipwa.providers.tokens import TokenCache
from lipwa.services.accounts import ApiKeyCache
from lipwa.services.callback_confirm import ProviderConfirmer
from lipwa.services.callbacks import CallbackService
from lipwa.services.circuit import CircuitBreaker
from lipwa.services.collect import CollectService
from lipwa.services.flags import FlagCache
from lipwa.services.guards import payment_guards
from lipwa.services.modes import mode_problem
from lipwa.services.money import MoneyServices
from lipwa.services.pacing import Pacer
from lipwa.services.providers import ProviderRegistry
from lipwa.services.ratelimit import RateLimits
from lipwa.services.recovery import RecoveryService
from lipwa.services.recovery_rules import Schedule
from lipwa.services.webhooks import DeliveryPolicy, WebhookSender
from lipwa.store.db import make_engine, make_sessionmaker
from lipwa.vault import KeyRing, Vault, VaultError


class ConfigurationError(Exception):
    """The process cannot start with these settings; the message says what to fix."""


def load_vault(settings: Settings) -> Vault:
    if settings.encryption_keys is None:
        raise ConfigurationError(
            "LIPWA_ENCRYPTION_KEYS is not set; generate one with `lipwa keys generate`"
        )
    try:
        return Vault(KeyRing.parse(settings.encryption_keys.get_secret_value()))
    except VaultError as exc:
        raise ConfigurationError(f"LIPWA_ENCRYPTION_KEYS: {exc}") from exc


@dataclass
class Container:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    vault: Vault
    http: httpx.AsyncClient
    tokens: TokenCache
    registry: ProviderRegistry
    collect: CollectService
    callbacks: CallbackService
    webhooks: WebhookSender
    circuits: CircuitBreaker
    recovery: RecoveryService
    flags: FlagCache
    rate_limits: RateLimits
    money: MoneyServices  # payouts, refunds, their callbacks and recovery
    api_keys: ApiKeyCache = field(default_factory=ApiKeyCache)

    @classmethod
    def build(cls, settings: Settings) -> Container:
        vault = load_vault(settings)
        engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        sessions = make_sessionmaker(engine)
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.provider_read_timeout_s, connect=settings.provider_connect_timeout_s
            ),
            verify=settings.verify_tls,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            headers={"User-Agent": "lipwa/0.1"},
        )
        shared_tokens = (
            SharedTokens(
                # bounded: a Redis that hangs must not hold a payment (the cache then fetches
                # its own token)
                Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2),
                vault,
                settings.redis_key_prefix,
            )
            if settings.redis_url
            else None
        )
        tokens = TokenCache(shared=shared_tokens)
        registry = ProviderRegistry(
            vault,
            http,
            tokens,
            connect_timeout_s=settings.provider_connect_timeout_s,
            read_timeout_s=settings.provider_read_timeout_s,
        )
        # In memory, per process: see lipwa.services.circuit.
        circuits = CircuitBreaker(settings.circuit_failures, settings.circuit_cooldown_s)
        flags = FlagCache(sessions, settings.flags_refresh_s)
        rate_limits = RateLimits.from_settings(settings)
        # One pace for MoMo status GETs, whether recovery or a callback's confirmation asks.
        pacer = Pacer(settings.momo_status_per_second, rate_limits.shared_storage)
        confirmer = ProviderConfirmer(registry, pacer)
        callbacks = CallbackService(sessions, confirmer)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            vault=vault,
            http=http,
            tokens=tokens,
            registry=registry,
            collect=CollectService(
                sessions,
                registry,
                settings.public_url,
                first_check_after_s=settings.first_check_after_s,
                idempotency_wait_s=settings.idempotency_wait_s,
                abandoned_after_s=settings.stale_send_after_s,
                guards=payment_guards(settings, flags, rate_limits, before_budget=[circuits]),
                prefix_overrides=settings.prefix_overrides,
            ),
            callbacks=callbacks,
            webhooks=WebhookSender(
                sessions,
                vault,
                DeliveryPolicy(
                    timeout_s=settings.webhook_timeout_s,
                    concurrency=settings.webhook_concurrency,
                    retry_base_s=settings.webhook_retry_base_s,
                    retry_cap_s=settings.webhook_retry_cap_s,
                    give_up_after_s=settings.webhook_give_up_after_s,
                ),
                verify_tls=settings.verify_tls,
            ),
            circuits=circuits,
            recovery=RecoveryService(
                sessions,
                registry,
                callbacks,
                settings.public_url,
                schedule=Schedule(
                    backoff_initial_s=settings.check_backoff_initial_s,
                    backoff_max_s=settings.check_backoff_max_s,
                    horizon_s=settings.check_horizon_s,
                    stale_send_s=settings.stale_send_after_s,
                    resend_window_s=settings.momo_approval_window_s,
                ),
                pacer=pacer,
                circuits=circuits,
                flags=flags,
            ),
            flags=flags,
            rate_limits=rate_limits,
            money=MoneyServices.build(settings, sessions, registry, flags, confirmer),
        )

    async def check_startup(self) -> None:
        """Refuse to serve when LIPWA_MODE contradicts the keys and accounts in the database."""
        async with self.sessions() as session:
            problem = await mode_problem(session, self.settings.mode)
        if problem:
            raise ConfigurationError(problem)

    async def close(self) -> None:
        await self.rate_limits.close()
        await self.tokens.close()
        await self.webhooks.close()
        await self.http.aclose()
        await self.engine.dispose()
