"""The circuit breaker per provider account: opens on consecutive failures, fails fast,
half-opens after the cool-down with one trial, closes on success."""

from __future__ import annotations

import pytest

from lipwa.errors import ApiError
from lipwa.providers.base import SendOutcome, SendResult
from lipwa.services.circuit import CircuitBreaker, CircuitState, is_failure


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(failures=3, cooldown_s=30.0, clock=clock)


def fail(b: CircuitBreaker, times: int = 1, account: str = "acct_1") -> None:
    for _ in range(times):
        b.record(account, "mpesa", failed=True)


def test_send_results_that_count_as_failures() -> None:
    assert is_failure(SendResult(SendOutcome.AMBIGUOUS))
    assert is_failure(SendResult(SendOutcome.REJECTED, transient=True))
    assert not is_failure(SendResult(SendOutcome.REJECTED, failure_code="invalid_request"))
    assert not is_failure(SendResult(SendOutcome.ACCEPTED, provider_ref="ws_CO_1"))


def test_opens_after_consecutive_failures_and_refuses_with_provider_unavailable() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 2)
    b.admit("acct_1", "mpesa")  # two failures: still closed
    fail(b)
    assert b.state("acct_1") is CircuitState.OPEN
    with pytest.raises(ApiError) as refused:
        b.admit("acct_1", "mpesa")
    error = refused.value
    assert (error.status, error.type, error.code) == (503, "provider_error", "provider_unavailable")
    assert error.message == "M-Pesa is not answering; try again in a minute"
    assert error.param is None
    assert error.headers["Retry-After"] == "30"


def test_a_success_in_between_resets_the_count() -> None:
    b = breaker(Clock())
    fail(b, 2)
    b.record("acct_1", "mpesa", failed=False)
    fail(b, 2)
    assert b.state("acct_1") is CircuitState.CLOSED


def test_accounts_are_independent() -> None:
    b = breaker(Clock())
    fail(b, 3, account="acct_1")
    b.admit("acct_2", "mpesa")
    assert b.state("acct_2") is CircuitState.CLOSED


def test_half_open_lets_one_trial_through_and_closes_on_its_success() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += 29.9
    with pytest.raises(ApiError):
        b.admit("acct_1", "mpesa")
    clock.now += 0.2
    b.admit("acct_1", "mpesa")  # the trial
    assert b.state("acct_1") is CircuitState.HALF_OPEN
    with pytest.raises(ApiError):
        b.admit("acct_1", "mpesa")  # a second caller while the trial is out
    b.record("acct_1", "mpesa", failed=False)
    assert b.state("acct_1") is CircuitState.CLOSED
    b.admit("acct_1", "mpesa")
    assert b.snapshot() == []


def test_a_failed_trial_opens_it_again_for_a_full_cool_down() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += 30
    b.admit("acct_1", "mpesa")
    fail(b)
    assert b.state("acct_1") is CircuitState.OPEN
    clock.now += 10
    with pytest.raises(ApiError):
        b.admit("acct_1", "mpesa")
    [row] = b.snapshot()
    assert row["state"] == "open" and row["retry_in_s"] == 20.0


def test_a_trial_that_never_reports_frees_the_slot_after_a_cool_down() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 3)
    clock.now += 30
    b.admit("acct_1", "mpesa")
    clock.now += 30
    b.admit("acct_1", "mpesa")  # the first trial vanished (crash): a new one may go


def test_momo_refusal_names_the_provider() -> None:
    b = breaker(Clock())
    for _ in range(3):
        b.record("acct_m", "momo", failed=True)
    with pytest.raises(ApiError) as refused:
        b.admit("acct_m", "momo")
    assert refused.value.message.startswith("MTN MoMo is not answering")
