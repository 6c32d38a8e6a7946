"""A merchant's guard policy: gateway defaults (Settings) with the merchant's overrides.

Merchant settings (all optional)::

    {"rate_limits": {"prompts": "10/5minutes",   # STK prompts / requests-to-pay per window
                     "payer_lock_s": 120,         # one open prompt per payer phone
                     "same_amount_s": 120},       # M-Pesa: same phone + amount refused within
     "duplicate_window_s": 600}                   # same phone, amount and reference

A window of 0 switches that guard off. Rate strings use the ``limits`` syntax
("10/5minutes", "20/second", "100 per hour").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from limits import parse_many

from lipwa.domain.errors import DomainError

_RATE_KEYS = frozenset({"prompts", "payer_lock_s", "same_amount_s"})
_MAX_WINDOW_S = 7 * 24 * 3600


@dataclass(frozen=True)
class GuardPolicy:
    prompts: str = "10/5minutes"
    payer_lock_s: float = 120.0
    same_amount_s: float = 120.0
    duplicate_window_s: float = 600.0


def check_rate(text: object, param: str) -> str:
    """A single ``limits`` rate string, or DomainError ``invalid_rate_limit``."""
    try:
        if not isinstance(text, str) or len(parse_many(text)) != 1:
            raise ValueError(text)
    except ValueError:
        raise DomainError(
            "invalid_rate_limit",
            f'{param} must be one rate such as "10/5minutes" or "20/second".',
            param=param,
        ) from None
    return text


def _window(value: object, param: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (0 <= value <= _MAX_WINDOW_S)
    ):
        raise DomainError(
            "invalid_rate_limit",
            f"{param} must be a number of seconds between 0 (off) and {_MAX_WINDOW_S}.",
            param=param,
        )
    return float(value)


def policy_for(defaults: GuardPolicy, settings: Mapping[str, Any] | None) -> GuardPolicy:
    """``defaults`` with the overrides found in a merchant's ``settings``."""
    settings = settings or {}
    changes: dict[str, Any] = {}
    rates = settings.get("rate_limits")
    if rates is not None:
        if not isinstance(rates, Mapping) or not set(rates) <= _RATE_KEYS:
            raise DomainError(
                "invalid_rate_limit",
                "rate_limits takes only prompts, payer_lock_s and same_amount_s.",
                param="rate_limits",
            )
        if "prompts" in rates:
            changes["prompts"] = check_rate(rates["prompts"], "rate_limits.prompts")
        for key in ("payer_lock_s", "same_amount_s"):
            if key in rates:
                changes[key] = _window(rates[key], f"rate_limits.{key}")
    if "duplicate_window_s" in settings:
        changes["duplicate_window_s"] = _window(
            settings["duplicate_window_s"], "duplicate_window_s"
        )
    return replace(defaults, **changes)
