"""A merchant's settings, checked when the merchant is made.

Each setting is read where it is used (amount limits by payments, fees on success, guard
policy by the guards, approval thresholds by payouts); this checks them all up front, so a
typo is refused when it is typed instead of on every payment that follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from lipwa.domain.errors import DomainError
from lipwa.domain.fees import check_fee_settings
from lipwa.domain.money import DEFAULT_RULES, rule_for
from lipwa.domain.payer_limits import daily_limit_for
from lipwa.domain.policy import GuardPolicy, policy_for


def check_merchant_settings(settings: Mapping[str, Any]) -> None:
    """Raise DomainError (its param names the setting) if any setting could not be used."""
    check_fee_settings(settings)
    policy_for(GuardPolicy(), settings)
    _check_limits(settings.get("limits"))
    _check_thresholds(settings.get("payout_approval_threshold"))


def _check_limits(limits: object) -> None:
    if limits is None:
        return
    if not isinstance(limits, Mapping):
        raise DomainError(
            "invalid_amount_limits", "Amount limits must be an object keyed by currency.", "limits"
        )
    for currency in limits:
        providers = [p for p, c in DEFAULT_RULES if c == currency]
        if not providers:
            raise DomainError(
                "invalid_amount_limits", f"No provider takes {currency}.", f"limits.{currency}"
            )
        for provider in providers:
            rule_for(provider, currency, limits)
        daily_limit_for(currency, limits)


def _check_thresholds(thresholds: object) -> None:
    param = "payout_approval_threshold"
    if thresholds is None:
        return
    if not isinstance(thresholds, Mapping):
        raise DomainError(
            "invalid_approval_threshold",
            f'{param} must be an object keyed by currency, e.g. {{"KES": "50000"}}.',
            param,
        )
    for currency, raw in thresholds.items():
        if not any(c == currency for _, c in DEFAULT_RULES):
            # "kes" or "KSH" would never match a payout's currency: approval silently off.
            raise DomainError(
                "invalid_approval_threshold",
                f"{param} is keyed by currency code in capitals, such as KES; no provider "
                f"takes {currency!r}.",
                f"{param}.{currency}",
            )
        try:
            value = Decimal(str(raw)) if isinstance(raw, str | int) else None
        except InvalidOperation:
            value = None
        if raw is not None and (value is None or not value.is_finite() or value < 0):
            raise DomainError(
                "invalid_approval_threshold",
                f'{param}.{currency} must be an amount such as "50000" (or null for none).',
                f"{param}.{currency}",
            )
