"""Balance snapshots: rows of ``balance_snapshots``, their reads and writes, and the M-Pesa
Account Balance result callback that completes one.

A snapshot is ``requested`` (M-Pesa: the request went out, the result will come to
``/callbacks/<token>/balance/<snapshot id>``), ``received`` (with its balances) or ``failed``
(with the error). Balances are stored as plain JSON: ``[{"account", "currency", "available",
"amounts"?}]`` with amounts as decimal strings.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import utcnow
from lipwa.domain.errors import DomainError
from lipwa.domain.ids import new_id
from lipwa.domain.money import format_amount
from lipwa.providers.mpesa.balance import BalanceLine, read_balance_result
from lipwa.providers.mpesa.results import parse_result
from lipwa.services import inbound
from lipwa.services.unconfirmed import due_callbacks
from lipwa.store.tables import BalanceSnapshot, InboundCallback

log = structlog.get_logger("lipwa.balances")

RESULT, TIMEOUT = "balance", "balance-timeout"
KINDS = (RESULT, TIMEOUT)


def amount_text(amount: Decimal, currency: str) -> str:
    try:
        return format_amount(amount, currency)
    except (DomainError, ValueError):
        return f"{amount:f}"


def mpesa_lines(lines: list[BalanceLine]) -> list[dict[str, Any]]:
    return [
        {
            "account": line.account,
            "currency": line.currency,
            "available": amount_text(line.available, line.currency),
            "amounts": [amount_text(a, line.currency) for a in line.amounts],
        }
        for line in lines
    ]


async def latest(
    session: AsyncSession, account_id: str, status: str, since: datetime | None = None
) -> BalanceSnapshot | None:
    order = BalanceSnapshot.received_at if status == "received" else BalanceSnapshot.requested_at
    query = select(BalanceSnapshot).where(
        BalanceSnapshot.account_id == account_id, BalanceSnapshot.status == status
    )
    if since is not None:
        query = query.where(order >= since)
    found: BalanceSnapshot | None = await session.scalar(query.order_by(order.desc()).limit(1))
    return found


async def create(
    sessions: async_sessionmaker[AsyncSession],
    *,
    merchant_id: str,
    account_id: str,
    status: str,
    balances: list[dict[str, Any]] | None = None,
    error: str | None = None,
) -> BalanceSnapshot:
    now = utcnow()
    snapshot = BalanceSnapshot(
        id=new_id("bal"),
        merchant_id=merchant_id,
        account_id=account_id,
        status=status,
        provider_ref=None,
        balances=balances,
        error=error[:300] if error else None,
        requested_at=now,
        received_at=now if status == "received" else None,
    )
    async with sessions() as session, session.begin():
        session.add(snapshot)
    return snapshot


async def finish(
    session: AsyncSession,
    snapshot_id: str,
    *,
    balances: list[dict[str, Any]] | None = None,
    error: str | None = None,
) -> bool:
    """``requested`` → ``received`` (balances) or ``failed`` (error); False if it was not
    ``requested`` any more (a repeated result changes nothing)."""
    values: dict[str, Any] = (
        {"status": "received", "balances": balances, "received_at": utcnow()}
        if balances is not None
        else {"status": "failed", "error": (error or "failed")[:300], "received_at": utcnow()}
    )
    result = await session.execute(
        update(BalanceSnapshot)
        .where(BalanceSnapshot.id == snapshot_id, BalanceSnapshot.status == "requested")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def set_provider_ref(
    sessions: async_sessionmaker[AsyncSession], snapshot_id: str, provider_ref: str
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(BalanceSnapshot)
            .where(BalanceSnapshot.id == snapshot_id, BalanceSnapshot.provider_ref.is_(None))
            .values(provider_ref=provider_ref)  # the column cuts it to length
        )


async def fail(sessions: async_sessionmaker[AsyncSession], snapshot_id: str, error: str) -> None:
    async with sessions() as session, session.begin():
        await finish(session, snapshot_id, error=error)


# ----- the result callback --------------------------------------------------------------------
class BalanceResults:
    """Applies stored ``balance`` / ``balance-timeout`` callbacks to their snapshot."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def receive(self, request: inbound.Inbound) -> str:
        stored = await inbound.store_inbound(self._sessions, request)
        try:
            return await self.process(stored.callback_id)
        except Exception:
            log.exception("balance_result_apply_failed", callback_id=stored.callback_id)
            return "deferred"

    async def process(self, callback_id: int) -> str:
        async with self._sessions() as session, session.begin():
            row = await session.get(InboundCallback, callback_id)
            if row is None:
                return "missing"
            if row.processed_at is not None:
                return row.outcome or "noop"
            outcome, detail = await self._apply(session, row)
            inbound.mark(row, outcome, detail)
        log.info("balance_result", callback_id=callback_id, outcome=outcome)
        return outcome

    async def _apply(self, session: AsyncSession, row: InboundCallback) -> tuple[str, str | None]:
        snapshot = await session.get(BalanceSnapshot, row.payment_id) if row.payment_id else None
        if row.account_id is None:
            return "forged", "no account has this callback token"
        if snapshot is None or snapshot.account_id != row.account_id:
            return "unmatched", f"no balance request {row.payment_id} on this account"
        envelope = parse_result(inbound.json_body(row))
        if row.kind == TIMEOUT:
            done = await finish(
                session, snapshot.id, error="the request timed out in Daraja's queue"
            )
            return ("applied" if done else "noop"), "queue timeout"
        if envelope is None:
            return "invalid", "body is not a Daraja Result envelope"
        ref = snapshot.provider_ref
        if ref and envelope.conversation_id and ref != envelope.conversation_id:
            return "anomaly", "ConversationID is not the one of this balance request"
        result = read_balance_result(envelope)
        if result.ok:
            done = await finish(session, snapshot.id, balances=mpesa_lines(result.lines))
        else:
            done = await finish(
                session, snapshot.id, error=f"{result.code}: {result.message or 'failed'}"
            )
        return ("applied" if done else "noop"), None

    async def sweep(self, older_than_s: float = 5.0) -> int:
        handled = 0
        for callback_id in await due_callbacks(self._sessions, KINDS, older_than_s):
            try:
                await self.process(callback_id)
            except Exception:
                log.exception("balance_sweep_failed", callback_id=callback_id)
                continue
            handled += 1
        return handled
