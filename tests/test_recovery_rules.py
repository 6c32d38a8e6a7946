"""The recovery rules: schedule, when to ask, what an answer means, when a payment expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lipwa.providers.base import ProviderReport, QueryFailure, ReportState
from lipwa.services.recovery_rules import Action, Facts, Schedule, Step, first_step, judge

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
S = Schedule()
PENDING = ProviderReport(ReportState.PENDING, raw_code="500.001.1001")
NOT_FOUND = ProviderReport(ReportState.NOT_FOUND, raw_code="RESOURCE_NOT_FOUND")
FAILURE = QueryFailure("500.003.02", "Spike arrest", 500)


def facts(
    provider: str = "mpesa",
    send_state: str = "sent",
    ref: str | None = "ws_CO_1",
    attempts: int = 1,
) -> Facts:
    return Facts(provider, send_state, ref, T0, attempts)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_back_off_doubles_from_15_s_and_is_capped_at_10_min() -> None:
    waits = [S.delay(n).total_seconds() for n in range(1, 10)]
    assert waits == [15, 30, 60, 120, 240, 480, 600, 600, 600]


@pytest.mark.parametrize(
    ("provider", "send_state", "ref", "age", "step"),
    [
        ("mpesa", "sent", "ws_CO_1", 20, Step.QUERY),
        ("momo", "sent", "uuid", 20, Step.QUERY),
        ("mpesa", "not_sent", None, 30, Step.WAIT_FOR_SEND),  # may still be in flight
        ("mpesa", "not_sent", None, 61, Step.MARK_AMBIGUOUS),  # never re-sent
        ("momo", "not_sent", "uuid", 61, Step.RESEND),  # same X-Reference-Id, once
        ("momo", "not_sent", "uuid", 301, Step.QUERY),  # too late to prompt: look it up
        ("mpesa", "ambiguous", None, 20, Step.PARK),  # nothing to ask with
        ("momo", "ambiguous", "uuid", 20, Step.QUERY),
    ],
)
def test_first_step(
    provider: str, send_state: str, ref: str | None, age: float, step: Step
) -> None:
    assert first_step(facts(provider, send_state, ref), S, at(age)) is step


def test_final_answers_are_applied() -> None:
    for state in (ReportState.SUCCEEDED, ReportState.FAILED):
        verdict = judge(facts(), ProviderReport(state), S, at(25))
        assert verdict.action is Action.APPLY


def test_pending_is_asked_again_on_the_schedule_and_becomes_unknown_when_overdue() -> None:
    early = judge(facts(attempts=2), PENDING, S, at(40))
    assert (early.action, early.at, early.unknown) == (Action.RETRY, at(70), False)
    late = judge(facts(attempts=5), PENDING, S, at(200))  # M-Pesa prompt long closed
    assert late.action is Action.RETRY and late.unknown
    momo = judge(facts("momo", ref="uuid", attempts=5), PENDING, S, at(400))
    assert not momo.unknown  # MoMo's approval window is 5 minutes: overdue only at 10


def test_no_check_is_scheduled_past_the_horizon() -> None:
    verdict = judge(facts(attempts=20), PENDING, S, at(S.horizon_s - 60))
    assert verdict.at == at(S.horizon_s)


@pytest.mark.parametrize("answer", [PENDING, NOT_FOUND])
def test_expires_at_the_horizon_when_the_provider_answer_is_conclusive(
    answer: ProviderReport,
) -> None:
    verdict = judge(facts(attempts=150), answer, S, at(S.horizon_s))
    assert verdict.action is Action.EXPIRE


def test_never_expires_on_an_inconclusive_answer() -> None:
    verdict = judge(facts(attempts=150), FAILURE, S, at(S.horizon_s + 1))
    assert (verdict.action, verdict.unknown) == (Action.PARK, True)


def test_momo_ambiguous_send_expires_only_on_a_conclusive_answer() -> None:
    momo = facts("momo", "ambiguous", "uuid", attempts=150)
    assert judge(momo, NOT_FOUND, S, at(S.horizon_s)).action is Action.EXPIRE
    assert judge(momo, FAILURE, S, at(S.horizon_s)).action is Action.PARK


def test_momo_ambiguous_send_unknown_to_momo_expires_after_the_approval_window() -> None:
    momo = facts("momo", "ambiguous", "uuid", attempts=3)
    # A re-send made just inside the window may still be on its way for stale_send_s.
    over = S.resend_window_s + S.stale_send_s
    early = judge(momo, NOT_FOUND, S, at(over - 1))
    assert (early.action, early.at) == (Action.RETRY, at(over - 1 + 60))
    assert judge(momo, NOT_FOUND, S, at(over)).action is Action.EXPIRE
    assert judge(momo, PENDING, S, at(over)).action is Action.RETRY
    assert judge(momo, FAILURE, S, at(over)).action is Action.RETRY
    mpesa = facts("mpesa", "ambiguous", "ws_CO_1", attempts=3)
    assert judge(mpesa, NOT_FOUND, S, at(over)).action is Action.RETRY


def test_momo_never_sent_and_too_late_to_send_fails_at_once_on_404() -> None:
    verdict = judge(facts("momo", "not_sent", "uuid"), NOT_FOUND, S, at(400))
    assert verdict.action is Action.EXPIRE


def test_query_failures_back_off_too() -> None:
    verdict = judge(facts(attempts=3), FAILURE, S, at(100))
    assert (verdict.action, verdict.at) == (Action.RETRY, at(160))
