"""Provider reports that contradict what Lipwa holds (a success after a final failure, a
callback about another transaction, ...) or cannot settle it (a failed confirming repeat of a
reversal): never applied, kept for an operator.

Each one is stored, logged as a warning (``anomaly_recorded``), counted in
``lipwa_anomalies_total{kind}`` (the ``LipwaAnomalies`` alert fires on it) and listed by
``GET /admin/v1/anomalies`` and ``lipwa anomalies``, newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import isoformat, utcnow
from lipwa.metrics import ANOMALIES
from lipwa.store.tables import Anomaly

log = structlog.get_logger("lipwa.anomalies")

MAX_LIMIT = 500


def record(
    session: AsyncSession, merchant_id: str, subject_id: str, kind: str, detail: dict[str, Any]
) -> None:
    """Keep an anomaly in the caller's transaction. ``subject_id``: the payment, payout or
    refund the report was about; ``kind``: a fixed name (it labels the metric)."""
    session.add(
        Anomaly(
            merchant_id=merchant_id,
            payment_id=subject_id,
            kind=kind,
            detail=detail,
            created_at=utcnow(),
        )
    )
    ANOMALIES.labels(kind=kind).inc()
    log.warning("anomaly_recorded", kind=kind, subject_id=subject_id, merchant_id=merchant_id)


async def recorded(session: AsyncSession, subject_id: str, kind: str) -> bool:
    """Whether an anomaly of ``kind`` was kept about ``subject_id`` already."""
    found = await session.scalar(
        select(Anomaly.id).where(Anomaly.payment_id == subject_id, Anomaly.kind == kind).limit(1)
    )
    return found is not None


@dataclass(frozen=True)
class AnomalyFilter:
    merchant_id: str | None = None
    kind: str | None = None
    since: datetime | None = None
    limit: int = 50


async def list_anomalies(session: AsyncSession, query: AnomalyFilter) -> list[Anomaly]:
    """Anomalies matching ``query``, newest first."""
    stmt = select(Anomaly)
    if query.merchant_id:
        stmt = stmt.where(Anomaly.merchant_id == query.merchant_id)
    if query.kind:
        stmt = stmt.where(Anomaly.kind == query.kind)
    if query.since is not None:
        stmt = stmt.where(Anomaly.created_at >= query.since)
    limit = max(1, min(query.limit, MAX_LIMIT))
    stmt = stmt.order_by(Anomaly.created_at.desc(), Anomaly.id.desc()).limit(limit)
    return list(await session.scalars(stmt))


def anomaly_view(anomaly: Anomaly) -> dict[str, Any]:
    return {
        "id": anomaly.id,
        "object": "anomaly",
        "kind": anomaly.kind,
        "merchant_id": anomaly.merchant_id,
        "subject_id": anomaly.payment_id,
        "detail": anomaly.detail,
        "created_at": isoformat(anomaly.created_at),
    }
