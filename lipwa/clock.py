"""One place for "now", so tests and code agree on UTC, and for the days Lipwa works with."""

from __future__ import annotations

from datetime import UTC, date, datetime

# Days a report or reconciliation may cover: the time range of a far day (9999-12-31,
# 0001-01-01) overflows datetime.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2100, 12, 31)


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
