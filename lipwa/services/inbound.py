"""Store a provider request raw, before anything else happens to it (C2B, balance results).

Like ``CallbackService.receive``, but the account is resolved from the URL token in the same
transaction and kept on the row (``account_id``): C2B URLs carry no payment id, and the sweep
that applies rows a crashed process left behind needs to know whose they are. The token itself
is never stored, only a 4-character hint of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import utcnow
from lipwa.services.callbacks import KEPT_HEADERS
from lipwa.store.tables import InboundCallback, ProviderAccount


@dataclass(frozen=True)
class Inbound:
    """The parts of an HTTP request a callback row keeps."""

    token: str
    kind: str
    ident: str | None
    method: str
    headers: dict[str, str]
    body: bytes
    remote_addr: str | None


@dataclass(frozen=True)
class Stored:
    callback_id: int
    account_id: str | None  # None: no account has this token


async def store_inbound(sessions: async_sessionmaker[AsyncSession], inbound: Inbound) -> Stored:
    """Commit the raw request; returns its row id and the token's account (if any)."""
    async with sessions() as session, session.begin():
        account_id = await session.scalar(
            select(ProviderAccount.id).where(ProviderAccount.callback_token == inbound.token)
        )
        row = InboundCallback(
            account_id=account_id,
            payment_id=inbound.ident,
            kind=inbound.kind,
            method=inbound.method,
            path=f"/callbacks/{inbound.token[:4]}…/{inbound.kind}/{inbound.ident or ''}",
            headers={k: v for k, v in inbound.headers.items() if k.lower() in KEPT_HEADERS},
            body=inbound.body.decode("utf-8", errors="replace"),
            remote_addr=inbound.remote_addr,
            received_at=utcnow(),
        )
        session.add(row)
        await session.flush()
        return Stored(row.id, account_id)


def json_body(row: InboundCallback) -> Any:
    """The stored body as JSON; None when it is empty or not JSON."""
    try:
        return json.loads(row.body) if row.body else None
    except ValueError:
        return None


def mark(row: InboundCallback, outcome: str, detail: str | None = None) -> None:
    row.outcome = outcome
    row.detail = detail[:300] if detail else None
    row.processed_at = utcnow()


async def close_row(
    sessions: async_sessionmaker[AsyncSession], callback_id: int, outcome: str, detail: str
) -> None:
    """Record an outcome on a row that is not otherwise processed (in its own transaction)."""
    async with sessions() as session, session.begin():
        await session.execute(
            update(InboundCallback)
            .where(InboundCallback.id == callback_id, InboundCallback.processed_at.is_(None))
            .values(outcome=outcome, detail=detail[:300], processed_at=utcnow())
        )
