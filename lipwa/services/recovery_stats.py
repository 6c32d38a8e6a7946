"""How recovery is doing: the open backlog by age, what settled payments lately, the oldest."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import isoformat, utcnow
from lipwa.services.transitions import OPEN_STATUSES
from lipwa.store.tables import InboundCallback, Payment

# Age buckets of the open backlog: label -> (youngest, oldest) age in seconds.
AGE_BUCKETS: dict[str, tuple[float, float | None]] = {
    "lt_1m": (0, 60),
    "1m_5m": (60, 300),
    "5m_60m": (300, 3600),
    "gt_1h": (3600, None),
}
RESOLVED_BY = ("callback", "query", "expiry", "send")


def _scope(merchant_id: str | None) -> list[ColumnElement[bool]]:
    return [Payment.merchant_id == merchant_id] if merchant_id else []


async def recovery_stats(
    session: AsyncSession, merchant_id: str | None = None, now: datetime | None = None
) -> dict[str, Any]:
    now = now or utcnow()
    return {
        "object": "recovery_stats",
        "at": isoformat(now),
        "backlog": await _backlog(session, merchant_id, now),
        "resolved_last_24h": await _resolved(session, merchant_id, now),
        "oldest_unresolved": await _oldest(session, merchant_id, now),
        "due_now": await session.scalar(
            select(func.count()).where(
                Payment.status.in_(OPEN_STATUSES),
                Payment.next_check_at <= now,
                *_scope(merchant_id),
            )
        ),
        "unprocessed_callbacks": await session.scalar(
            select(func.count()).where(InboundCallback.processed_at.is_(None))
        ),
    }


async def _backlog(
    session: AsyncSession, merchant_id: str | None, now: datetime
) -> dict[str, dict[str, int]]:
    columns = []
    for label, (young, old) in AGE_BUCKETS.items():
        condition = Payment.created_at <= now - timedelta(seconds=young)
        if old is not None:
            condition = condition & (Payment.created_at > now - timedelta(seconds=old))
        columns.append(func.sum(case((condition, 1), else_=0)).label(label))
    query = (
        select(Payment.status, func.count().label("total"), *columns)
        .where(Payment.status.in_(OPEN_STATUSES), *_scope(merchant_id))
        .group_by(Payment.status)
    )
    backlog = {s: {"total": 0, **dict.fromkeys(AGE_BUCKETS, 0)} for s in OPEN_STATUSES}
    for row in (await session.execute(query)).mappings():
        backlog[row["status"]] = {
            "total": int(row["total"]),
            **{label: int(row[label] or 0) for label in AGE_BUCKETS},
        }
    return backlog


async def _resolved(
    session: AsyncSession, merchant_id: str | None, now: datetime
) -> dict[str, int]:
    query = (
        select(Payment.resolved_by, func.count())
        .where(Payment.finalized_at >= now - timedelta(hours=24), *_scope(merchant_id))
        .group_by(Payment.resolved_by)
    )
    resolved = dict.fromkeys(RESOLVED_BY, 0)
    for by, count in (await session.execute(query)).all():
        resolved[by or "other"] = resolved.get(by or "other", 0) + int(count)
    return resolved


async def _oldest(
    session: AsyncSession, merchant_id: str | None, now: datetime, limit: int = 10
) -> list[dict[str, Any]]:
    query = (
        select(Payment)
        .where(Payment.status.in_(OPEN_STATUSES), *_scope(merchant_id))
        .order_by(Payment.created_at)
        .limit(limit)
    )
    return [
        {
            "id": p.id,
            "merchant_id": p.merchant_id,
            "provider": p.provider,
            "status": p.status,
            "send_state": p.send_state,
            "age_s": int((now - p.created_at).total_seconds()),
            "check_attempts": p.check_attempts,
            "next_check_at": isoformat(p.next_check_at),
        }
        for p in await session.scalars(query)
    ]
