"""The payment guards of a process, in the order they run (cheapest and broadest first).

1. kill switches and rollouts (503 ``provider_disabled``)
2. payer: requests for one phone take turns (``PayerTurn``), then one open prompt per phone
   (429 ``payer_busy``), M-Pesa same amount (429 ``same_amount_too_soon``)
3. duplicate: same phone, amount and reference (409 ``duplicate_payment``)
4. daily total per payer (400 ``daily_limit_exceeded``)
5. (the circuit breaker, passed in as ``before_budget``)
6. merchant prompt budget (429 ``rate_limited``), last, so refused requests don't spend it

The per-API-key request rate runs earlier still, for every merchant request, in the API's
authentication dependency (``lipwa.api.deps.caller``). An idempotent replay (same
Idempotency-Key and body) is answered before any guard runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from lipwa.config import Settings
from lipwa.domain.policy import GuardPolicy
from lipwa.services.collect import Guard
from lipwa.services.flags import FlagCache, KillSwitchGuard
from lipwa.services.payer_guards import DailyLimitGuard, DuplicateGuard, PayerGuard, PayerTurn
from lipwa.services.ratelimit import MerchantPromptGuard, RateLimits


def default_policy(settings: Settings) -> GuardPolicy:
    return GuardPolicy(
        prompts=settings.rate_limit_prompts,
        payer_lock_s=settings.payer_lock_s,
        same_amount_s=settings.same_amount_window_s,
        duplicate_window_s=settings.duplicate_window_s,
    )


def payment_guards(
    settings: Settings,
    flags: FlagCache,
    limits: RateLimits,
    before_budget: Sequence[Guard] = (),
) -> list[Guard]:
    """The guard chain; ``before_budget`` (the circuit breaker) runs just before the budget."""
    defaults = default_policy(settings)
    return [
        KillSwitchGuard(flags),
        PayerTurn(),
        PayerGuard(defaults),
        DuplicateGuard(defaults),
        DailyLimitGuard(),
        *before_budget,
        MerchantPromptGuard(limits, defaults),
    ]
