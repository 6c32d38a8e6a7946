"""A reconciliation run: a parsed statement against one provider account's payments.

Order of work, so no database transaction is held across the long parts (on SQLite every
write transaction takes the single write lock):

1. check the statement against the account (short read), record the run as ``running``
   (short write);
2. read the account's payments of the period (one read, closed before matching);
3. match — pure, in memory (``lipwa.reconcile.matcher``);
4. settle every ``unknown_resolved`` payment as succeeded with the statement's receipt, each in
   its own short transaction through ``transitions.apply`` (source ``reconciliation``; the
   event and webhook are written with it; a callback that won meanwhile makes it a no-op);
5. write the items in batches of ``ITEM_BATCH``, one short transaction each;
6. close the run with its summary (or mark it ``failed`` with the error).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import FIRST_DAY, LAST_DAY, isoformat, utcnow
from lipwa.domain.ids import new_id
from lipwa.domain.money import format_amount
from lipwa.domain.states import PaymentStatus
from lipwa.errors import invalid, not_found
from lipwa.reconcile.matcher import (
    CRITICAL,
    DISCREPANCIES,
    MATCHED,
    UNKNOWN_RESOLVED,
    WINDOW,
    Item,
    PaymentFacts,
    Period,
    match,
    summarise,
)
from lipwa.reconcile.statements import Statement, StatementError
from lipwa.services.transitions import Change, apply
from lipwa.store.tables import Payment, ProviderAccount, ReconciliationItem, ReconciliationRun

log = structlog.get_logger("lipwa.reconcile")

ITEM_BATCH = 1000
MAX_PAGE = 500
SOURCE = "reconciliation"  # Payment.resolved_by of the payments a statement settles

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class RunResult:
    run: dict[str, Any]
    items: list[dict[str, Any]]


# ----- the period --------------------------------------------------------------------------------
def period_for(statement: Statement, day: date | None, now: datetime | None = None) -> Period:
    """``day`` (a day of the statement's own clock) or the whole days its rows fall on; never
    past ``now`` (a day still running is covered only up to now)."""
    now = now or utcnow()
    if day is not None:
        first = last = day
    else:
        days = statement.days()
        if days is None:
            raise StatementError(
                0, "the statement has no rows: give --date so Lipwa knows which day it covers"
            )
        first, last = days
    for edge in (first, last):
        if not FIRST_DAY <= edge <= LAST_DAY:
            raise StatementError(0, f"the day {edge} is not between {FIRST_DAY} and {LAST_DAY}")
    if day is not None:
        _check_rows_fall_on(statement, day)
    start = datetime.combine(first, time(0), statement.zone)
    end = datetime.combine(last + timedelta(days=1), time(0), statement.zone)
    return Period(start.astimezone(UTC), min(end, now).astimezone(UTC))


def _check_rows_fall_on(statement: Statement, day: date) -> None:
    """A statement with rows, none of them on ``day``, is the wrong file or the wrong day:
    reconciling it would judge nothing and report no discrepancy."""
    span = statement.days()
    if span is None:
        return  # an empty statement: a day without a transaction
    if all(r.completed_at.astimezone(statement.zone).date() != day for r in statement.rows):
        first, last = span
        spoken = str(first) if first == last else f"{first} to {last}"
        raise StatementError(
            0,
            f"no row of the statement falls on {day} (its rows are of {spoken}): check the "
            "day or the file",
        )


def check_statement(statement: Statement, account: ProviderAccount) -> None:
    """The statement must be this account's provider's format and currency."""
    if statement.format != account.provider:
        names = {"mpesa": "an M-Pesa organisation statement", "momo": "an MTN MoMo export"}
        raise StatementError(
            0,
            f"this is {names[statement.format]}, but account {account.id} is {account.provider}",
        )
    for row in statement.rows:
        if row.currency != account.currency:
            raise StatementError(
                row.line,
                f"currency {row.currency} is not the account's currency {account.currency}",
            )


# ----- views -------------------------------------------------------------------------------------
def mask(phone: str) -> str:
    return f"{phone[:4]}****{phone[-3:]}" if len(phone) > 7 else "****"


def _row_view(item: Item) -> dict[str, Any] | None:
    row = item.row
    if row is None:
        return None
    return {
        "line": row.line,
        "receipt": row.receipt,
        "completed_at": isoformat(row.completed_at),
        "amount": str(row.amount),
        "currency": row.currency,
        "direction": row.direction,
        "party": row.party,
        "reference": row.reference,
        "status": row.status,
        "kind": row.kind,
    }


def _amount(amount: Decimal, currency: str) -> str:
    try:
        return format_amount(amount, currency)
    except ValueError:
        return f"{amount:f}"


def _payment_view(item: Item) -> dict[str, Any] | None:
    p = item.payment
    if p is None:
        return None
    return {
        "id": p.id,
        "status": p.status,
        "amount": _amount(p.amount, p.currency),
        "currency": p.currency,
        "phone": mask(p.phone),
        "receipt": p.receipt,
        "created_at": isoformat(p.created_at),
        "reference": p.reference,
    }


def item_detail(item: Item) -> dict[str, Any]:
    return {
        "matched_by": item.matched_by,
        "statement": _row_view(item),
        "payment": _payment_view(item),
        **item.detail,
    }


def item_view(row: ReconciliationItem | dict[str, Any]) -> dict[str, Any]:
    """An item for the API (a stored row) or the CLI (the values just inserted: no id)."""
    values: dict[str, Any] = row if isinstance(row, dict) else {
        "id": row.id,
        "kind": row.kind,
        "payment_id": row.payment_id,
        "receipt": row.receipt,
        "amount": row.amount,
        "detail": row.detail,
    }  # fmt: skip
    amount = values["amount"]
    view = {"id": values["id"]} if "id" in values else {}
    return {
        **view,
        "object": "reconciliation_item",
        "kind": values["kind"],
        "critical": values["kind"] in CRITICAL,
        "payment_id": values["payment_id"],
        "receipt": values["receipt"],
        "amount": None if amount is None else f"{amount:f}",
        **values["detail"],
    }


def run_view(run: ReconciliationRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "object": "reconciliation_run",
        "merchant_id": run.merchant_id,
        "account_id": run.account_id,
        "statement_date": run.statement_date,
        "source": run.source,
        "status": run.status,
        "summary": run.summary,
        "created_at": isoformat(run.created_at),
        "finished_at": isoformat(run.finished_at),
    }


def _item_values(run_id: str, item: Item) -> dict[str, Any]:
    receipt = item.row.receipt if item.row else (item.payment.receipt if item.payment else None)
    amount = item.row.amount if item.row else (item.payment.amount if item.payment else None)
    return {
        "run_id": run_id,
        "kind": item.kind,
        "payment_id": item.payment.id if item.payment else None,
        "receipt": receipt,
        "amount": amount,
        "detail": item_detail(item),
    }


# ----- the run -----------------------------------------------------------------------------------
async def load_payments(
    session: AsyncSession, account_id: str, period: Period, window: timedelta = WINDOW
) -> list[PaymentFacts]:
    """The account's payments created in the period, widened by the matching window."""
    result = await session.execute(
        select(
            Payment.id,
            Payment.status,
            Payment.amount,
            Payment.currency,
            Payment.phone,
            Payment.receipt,
            Payment.created_at,
            Payment.finalized_at,
            Payment.provider_reference,
        ).where(
            Payment.account_id == account_id,
            Payment.created_at >= period.start - window,
            Payment.created_at < period.end + window,
        )
    )
    return [
        PaymentFacts(
            id=r.id,
            status=r.status,
            amount=r.amount,
            currency=r.currency,
            phone=r.phone,
            receipt=r.receipt,
            created_at=r.created_at,
            finalized_at=r.finalized_at,
            reference=r.provider_reference or "",
        )
        for r in result
    ]


def _pid(item: Item) -> str:
    return item.payment.id if item.payment else ""


def _to_settle(item: Item) -> bool:
    """Paid per the statement and Lipwa lacks the outcome (or, when matched, the receipt)."""
    if item.kind == UNKNOWN_RESOLVED:
        return True
    return item.kind == MATCHED and item.payment is not None and item.payment.receipt is None


class Reconciler:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def account(self, account_id: str) -> ProviderAccount:
        async with self._sessions() as session:
            account = await session.get(ProviderAccount, account_id)
        if account is None:
            raise not_found("provider account", account_id)
        return account

    async def run(
        self,
        account_id: str,
        statement: Statement,
        *,
        day: date | None = None,
        source: str = "",
        run_id: str | None = None,
        progress: Progress | None = None,
        now: datetime | None = None,
    ) -> RunResult:
        """Reconcile ``statement`` against the account; StatementError before anything is
        written if the statement does not fit the account."""
        account = await self.account(account_id)
        check_statement(statement, account)
        period = period_for(statement, day, now)
        started = utcnow()
        run = ReconciliationRun(
            id=run_id or new_id("rec"),
            merchant_id=account.merchant_id,
            account_id=account.id,
            statement_date=day.isoformat() if day else None,
            source=(source or statement.source or "statement")[:300],
            status="running",
            summary={},
            created_at=started,
            finished_at=None,
        )
        async with self._sessions() as session, session.begin():
            session.add(run)
        try:
            return await self._work(run.id, account, statement, period, progress)
        except Exception as exc:
            await self._finish(run.id, "failed", {"error": f"{type(exc).__name__}: {exc}"[:500]})
            raise

    async def record_failure(
        self, run_id: str, account: ProviderAccount, day: date, source: str, error: str
    ) -> None:
        """A run that could not start (unreadable statement), kept so nobody retries blindly."""
        now = utcnow()
        run = ReconciliationRun(
            id=run_id,
            merchant_id=account.merchant_id,
            account_id=account.id,
            statement_date=day.isoformat(),
            source=source[:300],
            status="failed",
            summary={"error": error[:500]},
            created_at=now,
            finished_at=now,
        )
        try:
            async with self._sessions() as session, session.begin():
                session.add(run)
        except IntegrityError:
            pass  # another worker recorded this day first

    async def _work(
        self,
        run_id: str,
        account: ProviderAccount,
        statement: Statement,
        period: Period,
        progress: Progress | None,
    ) -> RunResult:
        async with self._sessions() as session:
            payments = await load_payments(session, account.id, period)
        items = match(statement.rows, payments, period)
        settled = await self._settle([i for i in items if _to_settle(i)], progress)
        stored = await self._store(run_id, items, settled, progress)
        counts = summarise(items)
        summary = {
            "period": {"start": isoformat(period.start), "end": isoformat(period.end)},
            "statement_format": statement.format,
            "statement_rows": len(statement.rows),
            "lipwa_payments": len(payments),
            "counts": counts,
            "discrepancies": sum(counts[k] for k in DISCREPANCIES),
            "critical": sum(counts[k] for k in CRITICAL),
            "settled": sum(
                1 for i in items if i.kind == UNKNOWN_RESOLVED and settled.get(_pid(i)) == "applied"
            ),
            # Succeeded by a status query (no receipt): the statement's receipt was added.
            "receipts_added": sum(1 for i in items if i.kind == MATCHED and _pid(i) in settled),
        }
        run = await self._finish(run_id, "done", summary)
        log.info("reconciliation_done", run_id=run_id, account_id=account.id, **counts)
        return RunResult(run_view(run), stored)

    async def _settle(self, items: Sequence[Item], progress: Progress | None) -> dict[str, str]:
        """Mark every payment the statement proves paid as succeeded, one transaction each;
        a succeeded payment that lacks its receipt (settled by a status query) gets it."""
        outcome: dict[str, str] = {}
        for n, item in enumerate(items, 1):
            assert item.payment is not None and item.row is not None
            change = Change(PaymentStatus.SUCCEEDED, source=SOURCE, receipt=item.row.receipt)
            async with self._sessions() as session, session.begin():
                decision = await apply(session, item.payment.id, change)
            outcome[item.payment.id] = decision.value
            log.info("reconciliation_settled", payment_id=item.payment.id, result=decision.value)
            if progress:
                progress("settle", n, len(items))
        return outcome

    async def _store(
        self,
        run_id: str,
        items: Sequence[Item],
        settled: dict[str, str],
        progress: Progress | None,
    ) -> list[dict[str, Any]]:
        views: list[dict[str, Any]] = []
        for start in range(0, len(items), ITEM_BATCH):
            rows = []
            for item in items[start : start + ITEM_BATCH]:
                values = _item_values(run_id, item)
                if item.payment is not None and item.payment.id in settled:
                    if item.kind == UNKNOWN_RESOLVED:
                        values["detail"]["settled"] = settled[item.payment.id]
                    else:
                        values["detail"]["receipt_added"] = True
                rows.append(values)
            async with self._sessions() as session, session.begin():
                await session.execute(insert(ReconciliationItem), rows)  # one executemany
            views.extend(item_view(r) for r in rows)
            if progress:
                progress("store", min(start + ITEM_BATCH, len(items)), len(items))
        return views

    async def _finish(self, run_id: str, status: str, summary: dict[str, Any]) -> ReconciliationRun:
        async with self._sessions() as session, session.begin():
            run = await session.get(ReconciliationRun, run_id)
            assert run is not None
            run.status = status
            run.summary = summary
            run.finished_at = utcnow()
        return run


# ----- reading runs ------------------------------------------------------------------------------
def _cursor(value: str | None, name: str = "cursor") -> tuple[datetime, str] | None:
    if not value:
        return None
    try:
        created, ident = (
            base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode().split("|", 1)
        )
        after = datetime.fromisoformat(created)
        if after.tzinfo is None:  # ours always carry one; a naive time cannot be compared
            raise ValueError(created)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid("invalid_cursor", "cursor is not one this API returned", name) from None
    return after, ident


async def list_runs(
    session: AsyncSession,
    *,
    account_id: str | None = None,
    merchant_id: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    if not 1 <= limit <= 100:
        raise invalid("invalid_limit", "limit must be between 1 and 100", "limit")
    query = select(ReconciliationRun)
    if account_id:
        query = query.where(ReconciliationRun.account_id == account_id)
    if merchant_id:
        query = query.where(ReconciliationRun.merchant_id == merchant_id)
    after = _cursor(cursor)
    if after:
        created = after[0]
        query = query.where(
            (ReconciliationRun.created_at < created)
            | ((ReconciliationRun.created_at == created) & (ReconciliationRun.id < after[1]))
        )
    rows = list(
        await session.scalars(
            query.order_by(ReconciliationRun.created_at.desc(), ReconciliationRun.id.desc()).limit(
                limit + 1
            )
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        last = rows[-1]
        raw = f"{last.created_at.isoformat()}|{last.id}".encode()
        next_cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return {
        "object": "list",
        "data": [run_view(r) for r in rows],
        "has_more": more,
        "next_cursor": next_cursor,
    }


async def get_run(
    session: AsyncSession,
    run_id: str,
    *,
    kind: str | None = None,
    limit: int = 100,
    after: int | None = None,
) -> dict[str, Any]:
    """A run with one page of its items (by item id; ``after`` is the last id seen)."""
    if not 1 <= limit <= MAX_PAGE:
        raise invalid("invalid_limit", f"limit must be between 1 and {MAX_PAGE}", "limit")
    run = await session.get(ReconciliationRun, run_id)
    if run is None:
        raise not_found("reconciliation run", run_id)
    query = select(ReconciliationItem).where(ReconciliationItem.run_id == run_id)
    if kind:
        query = query.where(ReconciliationItem.kind.in_(kind.split(",")))
    if after is not None:
        query = query.where(ReconciliationItem.id > after)
    rows = list(await session.scalars(query.order_by(ReconciliationItem.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    view = run_view(run)
    view["items"] = {
        "object": "list",
        "data": [item_view(r) for r in rows],
        "has_more": more,
        "next_after": rows[-1].id if more else None,
    }
    return view
