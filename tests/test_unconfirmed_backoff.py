"""How long a callback the provider could not confirm waits before it is asked about again."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from lipwa.services.unconfirmed import (
    RETRY_AFTER_MAX,
    RETRY_AFTER_MIN,
    UNCONFIRMED_FOR,
    retry_after,
)

ages = st.timedeltas(min_value=timedelta(0), max_value=UNCONFIRMED_FOR)


@given(ages, ages)
def test_the_wait_is_bounded_and_grows_with_age(a: timedelta, b: timedelta) -> None:
    younger, older = sorted((a, b))
    assert RETRY_AFTER_MIN <= retry_after(younger) <= retry_after(older) <= RETRY_AFTER_MAX


def test_a_fresh_callback_is_asked_again_within_seconds_an_old_one_every_ten_minutes() -> None:
    assert retry_after(timedelta(seconds=1)) == timedelta(seconds=5)
    assert retry_after(timedelta(minutes=1)) == timedelta(seconds=15)
    assert retry_after(timedelta(hours=5)) == timedelta(minutes=10)
    # Over the 24 h before a row is given up: a few hundred queries, not one every sweep.
    age, asked = timedelta(0), 0
    while age < UNCONFIRMED_FOR:
        age += retry_after(age)
        asked += 1
    assert asked < 200
