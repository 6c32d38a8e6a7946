"""The audit log: who did what to which target, why, and what changed.

``record`` adds an entry to the caller's session, so it commits (or rolls back) with the change
it describes. Entries never hold secrets: callers pass ids, names and non-secret settings only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import isoformat, utcnow
from lipwa.store.tables import AuditEntry

MAX_LIMIT = 500


async def record(
    session: AsyncSession,
    actor: str,
    action: str,
    target: str,
    merchant_id: str | None = None,
    reason: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        at=utcnow(),
        actor=actor[:100],
        action=action,
        target=target[:200],
        merchant_id=merchant_id,
        reason=reason[:300],
        detail=detail or {},
    )
    session.add(entry)
    await session.flush()
    return entry


@dataclass(frozen=True)
class AuditFilter:
    action: str | None = None
    target: str | None = None
    merchant_id: str | None = None
    since: datetime | None = None
    limit: int = 50


async def list_entries(session: AsyncSession, query: AuditFilter) -> list[AuditEntry]:
    """Entries matching ``query``, newest first."""
    stmt = select(AuditEntry)
    if query.action:
        stmt = stmt.where(AuditEntry.action == query.action)
    if query.target:
        stmt = stmt.where(AuditEntry.target == query.target)
    if query.merchant_id:
        stmt = stmt.where(AuditEntry.merchant_id == query.merchant_id)
    if query.since is not None:
        stmt = stmt.where(AuditEntry.at >= query.since)
    limit = max(1, min(query.limit, MAX_LIMIT))
    stmt = stmt.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    return list(await session.scalars(stmt))


def entry_view(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "object": "audit_entry",
        "at": isoformat(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "merchant_id": entry.merchant_id,
        "reason": entry.reason,
        "detail": entry.detail,
    }
