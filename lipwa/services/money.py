"""Money out and back: the payout, refund, result-callback and recovery services, built once
per process (the container holds one ``MoneyServices``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.config import Settings
from lipwa.services.callback_confirm import ProviderConfirmer
from lipwa.services.flags import FlagCache
from lipwa.services.guards import default_policy
from lipwa.services.money_callbacks import MoneyCallbacks
from lipwa.services.money_recovery import MoneyRecovery
from lipwa.services.payouts import PayoutService
from lipwa.services.providers import ProviderRegistry
from lipwa.services.recovery_rules import Schedule
from lipwa.services.refunds import RefundService


@dataclass
class MoneyServices:
    payouts: PayoutService
    refunds: RefundService
    callbacks: MoneyCallbacks
    recovery: MoneyRecovery

    @classmethod
    def build(
        cls,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        registry: ProviderRegistry,
        flags: FlagCache | None = None,
        confirmer: ProviderConfirmer | None = None,
    ) -> MoneyServices:
        payouts = PayoutService(
            sessions,
            registry,
            settings.public_url,
            first_check_after_s=settings.first_check_after_s,
            idempotency_wait_s=settings.idempotency_wait_s,
            abandoned_after_s=settings.stale_send_after_s,
            flags=flags,
            prefix_overrides=settings.prefix_overrides,
            guard_defaults=default_policy(settings),
        )
        refunds = RefundService(
            sessions,
            registry,
            settings.public_url,
            first_check_after_s=settings.first_check_after_s,
            idempotency_wait_s=settings.idempotency_wait_s,
            abandoned_after_s=settings.stale_send_after_s,
            flags=flags,
        )
        schedule = Schedule(
            backoff_initial_s=settings.check_backoff_initial_s,
            backoff_max_s=settings.check_backoff_max_s,
            horizon_s=settings.check_horizon_s,
            stale_send_s=settings.stale_send_after_s,
        )
        return cls(
            payouts=payouts,
            refunds=refunds,
            callbacks=MoneyCallbacks(sessions, confirmer),
            recovery=MoneyRecovery(
                sessions, registry, settings.public_url, payouts, refunds, schedule, flags
            ),
        )
