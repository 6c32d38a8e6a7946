"""Prometheus metric objects of the gateway: a plain module, one object per metric.

Import the object and call ``.labels(...).inc()``; exposition is someone else's job (the default
prometheus_client registry).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

T = TypeVar("T")

RATE_LIMIT_HITS = Counter(
    "lipwa_rate_limit_hits_total",
    "Requests refused by a rate limit. limit: api_key | merchant_prompts | payer_busy | "
    "same_amount.",
    ["limit"],
)

TOKEN_STORE_ERRORS = Counter(
    "lipwa_token_store_errors_total",
    "OAuth token reads and writes that could not reach the shared token store (Redis); the "
    "process used a token of its own instead.",
)
RATE_LIMIT_STORAGE_ERRORS = Counter(
    "lipwa_rate_limit_storage_errors_total",
    "Rate-limit checks that could not reach their storage (Redis) and let the request through "
    "unchecked (fail open).",
)

ANOMALIES = Counter(
    "lipwa_anomalies_total",
    "Provider reports kept as anomalies instead of being applied (they contradict a final "
    "state or another record), by kind.",
    ["kind"],
)

GUARD_REFUSALS = Counter(
    "lipwa_guard_refusals_total",
    "Payment requests refused by a guard before any write or provider call, by error code "
    "(provider_disabled, rate_limited, payer_busy, same_amount_too_soon, duplicate_payment, "
    "daily_limit_exceeded, ...).",
    ["code"],
)

CALLBACKS_REFUSED = Counter(
    "lipwa_callbacks_refused_total",
    "Provider callbacks refused before they were stored. reason: source (an address outside "
    "LIPWA_CALLBACK_SOURCES).",
    ["reason"],
)

# ----- gateway metrics (payments, providers, callbacks, webhooks, HTTP, backlog) ---------------
# Every process exposes its own values at GET /metrics (no multiprocess mode): scrape every
# process. Labels are closed sets (provider, status, operation, outcome, route template): never a
# phone, an id, a URL token or any other secret.

PAYMENTS = Counter(
    "lipwa_payments_total",
    "Payment state changes applied, by provider and the status reached (pending → unknown, "
    "succeeded, failed). Success rate: succeeded / (succeeded + failed).",
    ["provider", "status"],
)
PROVIDER_REQUESTS = Histogram(
    "lipwa_provider_request_seconds",
    "Calls to provider APIs by operation (stk_push, stk_query, request_to_pay, token, ...) and "
    "outcome (ok, accepted, rejected, ambiguous, failure, refused, error).",
    ["provider", "operation", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
)
CREDENTIAL_FAILURES = Counter(
    "lipwa_provider_credential_failures_total",
    "Token requests the provider refused (wrong or revoked credentials), by provider.",
    ["provider"],
)
CALLBACKS = Histogram(
    "lipwa_callback_processing_seconds",
    "Time from receiving a provider callback until it is stored and applied, by kind (MoMo "
    "callbacks are answered once stored; their confirmation with MTN counts here).",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0),
)
WEBHOOK_DELIVERIES = Counter(
    "lipwa_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: delivered | retrying | gave_up.",
    ["outcome"],
)
HTTP_REQUESTS = Counter(
    "lipwa_http_requests_total",
    "HTTP requests served, by method, route template and status class (2xx, 4xx, 5xx).",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "lipwa_http_request_seconds",
    "HTTP request duration, by method and route template.",
    ["method", "route"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0),
)
OPEN_PAYMENTS = Gauge(
    "lipwa_open_payments",
    "Payments not final yet, by status (read from the database at scrape time).",
    ["status"],
)
OLDEST_OPEN_PAYMENT = Gauge(
    "lipwa_oldest_open_payment_age_seconds",
    "Age of the oldest payment still pending or unknown whose checks go on (database, at "
    "scrape time); 0 if none. Parked payments are counted in lipwa_parked_payments instead.",
)
PARKED_PAYMENTS = Gauge(
    "lipwa_parked_payments",
    "Payments left unknown with no more automatic checks (nothing to ask the provider, or past "
    "the checking horizon): a late callback, reconciliation or a person settles them.",
)
METRICS_DB_READ_ERRORS = Counter(
    "lipwa_metrics_db_read_errors_total",
    "Scrapes whose database gauges could not be read (the rest of the scrape was served).",
)
WORKER_HEARTBEAT_AGE = Gauge(
    "lipwa_worker_heartbeat_age_seconds",
    "Seconds since the most recent worker heartbeat (database, at scrape time); -1 if none.",
)
CIRCUITS = Gauge(
    "lipwa_provider_circuits",
    "Provider accounts whose circuit breaker is not closed in this process, by state.",
    ["provider", "state"],
)


def payment_transition(provider: str, status: str) -> None:
    """Count one applied payment state change."""
    PAYMENTS.labels(provider, status).inc()


def webhook_delivery(outcome: str) -> None:
    """Count one webhook attempt: ``delivered``, ``retrying`` or ``gave_up``."""
    WEBHOOK_DELIVERIES.labels(outcome).inc()


@contextmanager
def callback_timer(kind: str, started: float | None = None) -> Iterator[None]:
    """Time one provider callback, from arrival (``started``, a perf_counter reading; default
    now) until it is applied."""
    started = time.perf_counter() if started is None else started
    try:
        yield
    finally:
        CALLBACKS.labels(kind).observe(time.perf_counter() - started)


def outcome_of(result: object) -> str:
    """A closed label for what a provider client method returned."""
    from lipwa.providers.base import QueryFailure, SendResult

    if isinstance(result, SendResult):
        return result.outcome.value
    return "failure" if isinstance(result, QueryFailure) else "ok"


def instrument_client(client: T, provider: str) -> T:
    """Time every public coroutine method of a provider client, and its token fetch.

    Wraps the bound methods on this instance only (the class is untouched); the client keeps
    its type. A token refusal that is not transient counts as a credential failure.
    """
    for name in dir(type(client)):
        if name.startswith("_") and name != "_fetch_token":
            continue
        method = getattr(client, name, None)
        if method is None or not inspect.iscoroutinefunction(method):
            continue
        operation = "token" if name == "_fetch_token" else name
        setattr(client, name, _timed(method, provider, operation))
    return client


def _timed(
    method: Callable[..., Awaitable[Any]], provider: str, operation: str
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await method(*args, **kwargs)
            outcome = outcome_of(result)
            return result
        except Exception as exc:
            if operation == "token" and not getattr(exc, "transient", True):
                outcome = "refused"
                CREDENTIAL_FAILURES.labels(provider).inc()
            raise
        finally:
            elapsed = time.perf_counter() - started
            PROVIDER_REQUESTS.labels(provider, operation, outcome).observe(elapsed)

    return wrapper


def set_backlog(by_status: dict[str, int], oldest_age_s: float | None, parked: int) -> None:
    for status in ("pending", "unknown"):
        OPEN_PAYMENTS.labels(status).set(by_status.get(status, 0))
    OLDEST_OPEN_PAYMENT.set(oldest_age_s or 0.0)
    PARKED_PAYMENTS.set(parked)


def set_circuits(snapshot: list[dict[str, Any]]) -> None:
    CIRCUITS.clear()
    for provider in ("mpesa", "momo"):
        for state in ("open", "half_open"):
            count = sum(1 for c in snapshot if c["provider"] == provider and c["state"] == state)
            CIRCUITS.labels(provider, state).set(count)


def _start_at_zero() -> None:
    """Create the closed label sets at 0, so the first event shows as an increase."""
    for provider in ("mpesa", "momo"):
        CREDENTIAL_FAILURES.labels(provider)
        for status in ("unknown", "succeeded", "failed"):
            PAYMENTS.labels(provider, status)
    for outcome in ("delivered", "retrying", "gave_up"):
        WEBHOOK_DELIVERIES.labels(outcome)


_start_at_zero()
