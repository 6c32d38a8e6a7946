"""The payment state machine: money states are monotonic; the first final report wins."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lipwa.domain.states import (
    FAILURE_CODES,
    FINAL_STATUSES,
    PaymentStatus,
    Transition,
    decide_transition,
    describe_failure,
)

P, U, S, F = (
    PaymentStatus.PENDING,
    PaymentStatus.UNKNOWN,
    PaymentStatus.SUCCEEDED,
    PaymentStatus.FAILED,
)
A, N, X = Transition.APPLIED, Transition.NOOP, Transition.ANOMALY

# fmt: off
TABLE = {
    (P, P): N, (P, U): A, (P, S): A, (P, F): A,
    (U, P): N, (U, U): N, (U, S): A, (U, F): A,
    (S, P): N, (S, U): N, (S, S): N, (S, F): X,
    (F, P): N, (F, U): N, (F, S): X, (F, F): N,
}
# fmt: on
RANK = {P: 0, U: 1, S: 2, F: 2}

statuses = st.sampled_from(list(PaymentStatus))
failures = st.one_of(st.none(), st.sampled_from(sorted(FAILURE_CODES)))
reports = st.tuples(statuses, failures)


def test_final_statuses() -> None:
    assert frozenset({S, F}) == FINAL_STATUSES


@pytest.mark.parametrize(("current", "reported"), sorted(TABLE))
def test_every_pair(current: PaymentStatus, reported: PaymentStatus) -> None:
    assert decide_transition(current, reported) is TABLE[(current, reported)]


@given(statuses, statuses, failures, failures)
def test_failure_codes_never_change_the_decision(
    current: PaymentStatus, reported: PaymentStatus, cf: str | None, rf: str | None
) -> None:
    decision = decide_transition(current, reported, current_failure=cf, reported_failure=rf)
    assert decision is TABLE[(current, reported)]


@given(st.lists(reports, max_size=25))
def test_any_sequence_of_reports_is_monotonic_and_first_final_wins(
    sequence: list[tuple[PaymentStatus, str | None]],
) -> None:
    status, failure = P, None
    for reported, reported_failure in sequence:
        was_final = status in FINAL_STATUSES
        decision = decide_transition(
            status, reported, current_failure=failure, reported_failure=reported_failure
        )
        if was_final:
            assert decision is not A
            assert (decision is X) == (reported in FINAL_STATUSES and reported != status)
        if reported == status:
            assert decision is N
        if decision is A:
            assert RANK[reported] > RANK[status]
            status = reported
            if reported is F:
                failure = reported_failure
    finals = [(r, f) for r, f in sequence if r in FINAL_STATUSES]
    if finals:
        assert status == finals[0][0]
        if status is F:
            assert failure == finals[0][1]  # the first failure code is kept
    else:
        assert status == (U if any(r is U for r, _ in sequence) else P)


def test_failure_catalogue() -> None:
    required = {
        "payer_declined",
        "payer_unreachable",
        "insufficient_funds",
        "wrong_pin",
        "payer_not_found",
        "expired",
        "subscriber_busy",
        "limit_exceeded",
        "not_allowed",
        "invalid_request",
        "provider_error",
        "provider_unavailable",
        "duplicate_transaction",
        "timeout",
        "rejected_by_provider",
        "unknown_failure",
    }
    assert required <= set(FAILURE_CODES)
    for code, text in FAILURE_CODES.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", code)
        assert text.endswith(".") and len(text) > 20
    assert describe_failure("wrong_pin") == FAILURE_CODES["wrong_pin"]
    assert describe_failure(None) == describe_failure("nope") == FAILURE_CODES["unknown_failure"]


def test_enum_values_are_the_wire_strings() -> None:
    assert [s.value for s in PaymentStatus] == ["pending", "unknown", "succeeded", "failed"]
    assert PaymentStatus("succeeded") is S and str(S) == "succeeded"
    assert [t.value for t in Transition] == ["applied", "noop", "anomaly"]


def test_failure_catalogue_matches_the_provider_code_catalogue() -> None:
    from lipwa.domain import codes

    assert set(FAILURE_CODES) == set(codes.FAILURE_CODES)
