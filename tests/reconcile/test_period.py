"""Which time a statement speaks for, and which day the daily run reconciles."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from lipwa.reconcile.scheduled import day_due, drop_path, run_id_for
from lipwa.reconcile.service import period_for
from lipwa.reconcile.statements import EAT, Statement, StatementError, parse_text
from tests.reconcile.test_statements import momo_export, mpesa_export


def test_period_is_whole_days_of_the_statement_clock_never_past_now() -> None:
    statement = parse_text(mpesa_export())
    (first, last) = statement.days()  # type: ignore[misc]
    later = datetime(2100, 1, 1, tzinfo=UTC)
    period = period_for(statement, None, now=later)
    assert period.start == datetime.combine(first, datetime.min.time(), EAT)
    assert (period.end - period.start).days == (last - first).days + 1
    # A day still running is covered only up to now.
    now = datetime.now(UTC)
    assert period_for(statement, None, now=now).end == now
    # --date: that day of the statement's clock (M-Pesa: EAT; MoMo export: UTC).
    day = date(2026, 3, 1)
    on_day = replace(
        statement,
        rows=(replace(statement.rows[0], completed_at=datetime(2026, 3, 1, 1, tzinfo=EAT)),),
    )
    assert period_for(on_day, day, now=later).start == datetime(2026, 2, 28, 21, tzinfo=UTC)
    momo = parse_text(momo_export())
    momo_on_day = replace(
        momo, rows=(replace(momo.rows[0], completed_at=datetime(2026, 3, 1, 23, tzinfo=UTC)),)
    )
    assert period_for(momo_on_day, day, now=later).start == datetime(2026, 3, 1, tzinfo=UTC)


def test_a_date_no_row_falls_on_is_refused() -> None:
    """The wrong --date (or the wrong file) would judge nothing and report no discrepancy."""
    statement = parse_text(mpesa_export())
    (first, _) = statement.days()  # type: ignore[misc]
    with pytest.raises(
        StatementError, match=f"no row of the statement falls on 2026-03-01 .*{first}"
    ):
        period_for(statement, date(2026, 3, 1))
    assert period_for(statement, first).start == datetime.combine(first, datetime.min.time(), EAT)


def test_an_empty_statement_needs_a_date() -> None:
    empty = Statement(format="mpesa", zone=EAT, rows=())
    with pytest.raises(StatementError, match="give --date"):
        period_for(empty, None)
    assert period_for(empty, date(2026, 3, 1), now=datetime(2100, 1, 1, tzinfo=UTC))


def test_a_day_too_far_for_a_time_range_is_refused() -> None:
    empty = Statement(format="mpesa", zone=EAT, rows=())
    for day in (date(9999, 12, 31), date(1, 1, 1)):
        with pytest.raises(StatementError, match=f"the day {day} is not between"):
            period_for(empty, day)
    # A statement whose rows fall on such a day is refused the same way.
    statement = parse_text(mpesa_export())
    row = replace(statement.rows[0], completed_at=datetime(9999, 12, 31, 12, tzinfo=EAT))
    with pytest.raises(StatementError, match="the day 9999-12-31"):
        period_for(replace(statement, rows=(*statement.rows, row)), None)


def test_the_daily_run_takes_the_last_finished_day_of_the_statement_clock() -> None:
    # 22:10 UTC on 1 March is 01:10 on 2 March in Nairobi: M-Pesa's 1 March is over.
    now = datetime(2026, 3, 1, 22, 10, tzinfo=UTC)
    assert day_due("mpesa", now) == date(2026, 3, 1)
    assert day_due("momo", now) == date(2026, 2, 28)
    # Not before half past midnight: late lines first reach the statement.
    assert day_due("mpesa", datetime(2026, 3, 1, 21, 20, tzinfo=UTC)) == date(2026, 2, 28)
    assert run_id_for("acct_1", date(2026, 3, 1)) == run_id_for("acct_1", date(2026, 3, 1))
    assert run_id_for("acct_1", date(2026, 3, 1)) != run_id_for("acct_2", date(2026, 3, 1))
    assert len(run_id_for("acct_1", date(2026, 3, 1))) <= 40
    assert str(drop_path(Path("/s"), "acct_1", date(2026, 3, 1))) == ("/s/acct_1/2026-03-01.csv")
