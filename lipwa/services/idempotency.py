"""Idempotency-Key bookkeeping shared by the money-moving POSTs (payments, payouts, refunds).

The key row is claimed in the same transaction as the write-ahead of the resource it creates;
``finish`` stores the answer so a retry with the same key and body replays it. A concurrent
twin that lost the claim waits for the winner's answer instead of acting; a retry after the
winner's process died learns the resource the claim names (``abandoned_answer``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import utcnow
from lipwa.errors import ApiError
from lipwa.store.tables import IdempotencyKey, Payment, Payout, Refund

# What a claimed key may name (``IdempotencyKey.resource_id``).
Resource = TypeVar("Resource", Payment, Payout, Refund)


@dataclass(frozen=True)
class Outcome:
    """An answer to a POST: what was (or will be) replayed for its Idempotency-Key."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


def request_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def lookup(
    session: AsyncSession, merchant_id: str, key: str, method_path: str, digest: str
) -> tuple[Outcome | None, bool]:
    """(the stored answer to replay or None, whether the key is claimed at all); 409 if the
    key was used with another request."""
    row = await session.get(IdempotencyKey, (merchant_id, key), populate_existing=True)
    if row is None:
        return None, False
    return _answer(row, method_path, digest), True


async def replay(
    session: AsyncSession, merchant_id: str, key: str, method_path: str, digest: str
) -> Outcome | None:
    """The stored answer for this key, None if there is none yet; 409 if the key was used
    with another request."""
    return (await lookup(session, merchant_id, key, method_path, digest))[0]


def _answer(row: IdempotencyKey, method_path: str, digest: str) -> Outcome | None:
    if row.request_hash != digest or row.method_path != method_path:
        raise ApiError(
            409,
            "idempotency_error",
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request",
            "Idempotency-Key",
        )
    if row.state == "done" and row.response_body is not None:
        return Outcome(row.response_status or 200, row.response_body, replayed=True)
    return None


def claim(
    session: AsyncSession,
    merchant_id: str,
    key: str,
    method_path: str,
    digest: str,
    now: datetime,
    resource_id: str | None = None,
) -> None:
    """Add the key row (flush it to detect a twin: IntegrityError)."""
    session.add(
        IdempotencyKey(
            merchant_id=merchant_id,
            key=key,
            method_path=method_path,
            request_hash=digest,
            state="in_progress",
            resource_id=resource_id,
            created_at=now,
        )
    )


async def abandoned_answer(
    session: AsyncSession,
    model: type[Resource],
    view: Callable[[Resource], dict[str, Any]],
    merchant_id: str,
    key: str,
    abandoned_after: timedelta,
) -> Outcome | None:
    """The resource as it stands when the request that claimed ``key`` over ``abandoned_after``
    ago died between writing it ahead and storing its answer (that answer will never come): the
    retry learns the resource, and nothing is sent again. None otherwise."""
    row = await session.get(IdempotencyKey, (merchant_id, key), populate_existing=True)
    if row is None or row.state == "done" or row.resource_id is None:
        return None
    if row.created_at > utcnow() - abandoned_after:
        return None
    resource = await session.get(model, row.resource_id, populate_existing=True)
    if resource is None or resource.merchant_id != merchant_id:
        return None
    return Outcome(201, view(resource), replayed=True)


async def finish(
    session: AsyncSession, merchant_id: str, key: str, status: int, body: dict[str, Any]
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.merchant_id == merchant_id, IdempotencyKey.key == key)
        .values(state="done", response_status=status, response_body=body)
    )


async def wait_for_twin(
    sessions: async_sessionmaker[AsyncSession],
    merchant_id: str,
    key: str,
    method_path: str,
    digest: str,
    wait_s: float,
) -> Outcome:
    """Poll for the answer of the request that claimed ``key`` first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    delay = 0.02
    while loop.time() < deadline:
        async with sessions() as session:
            found = await replay(session, merchant_id, key, method_path, digest)
        if found is not None:
            return found
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise ApiError(
        409,
        "idempotency_error",
        "idempotency_in_progress",
        "A request with this Idempotency-Key is still being processed; retry shortly",
        "Idempotency-Key",
    )
