"""Prometheus metric objects of the gateway: a plain module, one object per metric.

Import the object and call ``.labels(...).inc()``; exposition is someone else's job (the default
prometheus_client registry).
"""

from __future__ import annotations

from prometheus_client import Counter

RATE_LIMIT_HITS = Counter(
    "lipwa_rate_limit_hits_total",
    "Requests refused by a rate limit. limit: api_key | merchant_prompts | payer_busy | "
    "same_amount.",
    ["limit"],
)

GUARD_REFUSALS = Counter(
    "lipwa_guard_refusals_total",
    "Payment requests refused by a guard before any write or provider call, by error code "
    "(provider_disabled, rate_limited, payer_busy, same_amount_too_soon, duplicate_payment, "
    "daily_limit_exceeded, ...).",
    ["code"],
)
