"""The daily reconciliation: once per day per account that asks for it.

An account opts in with ``config.reconcile_daily = true`` (``PUT
/admin/v1/accounts/{id}/reconciliation``). Once its previous day is over (on the statement's
own clock, plus ``READY_AFTER``), the job reconciles that day against the first statement it
finds:

1. the drop folder: ``$LIPWA_STATEMENTS_DIR/<account_id>/<YYYY-MM-DD>.csv`` — neither
   Safaricom nor MTN offers an API for the organisation statement / transactions export, so
   an operator or a cron job downloads it from the provider's portal and drops it there;
2. the simulator, for sandbox accounts whose base URL is not the provider's real host:
   ``GET <base_url>/_sim/statements/mpesa.csv?shortcode=…`` or ``momo.csv?product=collection``.

Otherwise it waits and looks again next round. A drop-folder file of one of the
``LATE_FILE_DAYS`` days before is reconciled too when that day has no run yet (the export was
downloaded late); the simulator serves the day just finished only. The run id is derived
from (account, day), so several workers never reconcile the same day twice (the second
insert fails and is skipped); a file that cannot be parsed gives a ``failed`` run naming
the line (fix the file, then run ``lipwa reconcile`` by hand).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import structlog
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import utcnow
from lipwa.providers.momo import client as momo_client
from lipwa.providers.mpesa import client as mpesa_client
from lipwa.reconcile.service import Reconciler
from lipwa.reconcile.statements import EAT, Statement, StatementError, parse_file, parse_text
from lipwa.store.tables import ProviderAccount, ReconciliationItem, ReconciliationRun

log = structlog.get_logger("lipwa.reconcile.daily")

READY_AFTER = timedelta(minutes=30)  # late lines of the day have reached the statement
STALE_RUN = timedelta(hours=1)  # a run still "running" after this died with its process
LATE_FILE_DAYS = 7  # a drop-folder file this many days late is still picked up


def day_due(provider: str, now: datetime) -> date:
    """The last finished day on the statement's clock (M-Pesa: EAT; MoMo export: UTC)."""
    zone = EAT if provider == "mpesa" else UTC
    return (now.astimezone(zone) - READY_AFTER).date() - timedelta(days=1)


def run_id_for(account_id: str, day: date) -> str:
    digest = hashlib.sha256(f"{account_id}:{day.isoformat()}".encode()).hexdigest()[:24]
    return f"rec_d{digest}"


def drop_path(statements_dir: Path, account_id: str, day: date) -> Path:
    return statements_dir / account_id / f"{day.isoformat()}.csv"


def is_simulator(account: ProviderAccount) -> bool:
    module = mpesa_client if account.provider == "mpesa" else momo_client
    official = {module.SANDBOX_BASE_URL.rstrip("/"), module.PRODUCTION_BASE_URL.rstrip("/")}
    return (
        account.environment == "sandbox"
        and account.base_url.rstrip("/") not in official
        and not module.is_production_host(account.base_url)
    )


def simulator_statement_url(account: ProviderAccount) -> str:
    if account.provider == "mpesa":
        return (
            f"{account.base_url}/_sim/statements/mpesa.csv?shortcode={account.config['shortcode']}"
        )
    return f"{account.base_url}/_sim/statements/momo.csv?product=collection"


async def daily_accounts(sessions: async_sessionmaker[AsyncSession]) -> list[ProviderAccount]:
    async with sessions() as session:
        accounts = await session.scalars(
            select(ProviderAccount).where(ProviderAccount.status == "active")
        )
        return [a for a in accounts if a.config.get("reconcile_daily") is True]


async def _exists(sessions: async_sessionmaker[AsyncSession], run_id: str) -> bool:
    """Whether the day's run was made. One left ``running`` for ``STALE_RUN`` died with its
    process (a deploy cancels the worker): it is removed so the day is reconciled again,
    instead of being skipped for ever."""
    async with sessions() as session, session.begin():
        run = await session.get(ReconciliationRun, run_id)
        if run is None:
            return False
        if run.status != "running" or run.created_at > utcnow() - STALE_RUN:
            return True
        await session.execute(delete(ReconciliationItem).where(ReconciliationItem.run_id == run_id))
        await session.delete(run)
    log.warning("reconciliation_run_interrupted", run_id=run_id)
    return False


async def find_statement(
    account: ProviderAccount, day: date, statements_dir: Path | None, http: httpx.AsyncClient
) -> Statement | None:
    """The day's statement, or None if none is available yet. Raises StatementError."""
    if statements_dir is not None:
        path = drop_path(statements_dir, account.id, day)
        if path.is_file():
            return await asyncio.to_thread(parse_file, path)
    if is_simulator(account):
        url = simulator_statement_url(account)
        response = await http.get(url)
        response.raise_for_status()
        whole = parse_text(response.text, source=f"simulator {url}")
        # The simulator exports every day it has seen; a provider's statement of a day holds
        # that day's lines only (a day without payments is an empty statement, not an error).
        rows = tuple(r for r in whole.rows if r.completed_at.astimezone(whole.zone).date() == day)
        return dataclasses.replace(whole, rows=rows)
    return None


async def reconcile_due(
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    statements_dir: Path | None,
    now: datetime | None = None,
) -> int:
    """Reconcile every opted-in account's last finished day once, and any of the
    ``LATE_FILE_DAYS`` days before it whose file was dropped late; returns runs made."""
    now = now or utcnow()
    reconciler = Reconciler(sessions)
    done = 0
    for account in await daily_accounts(sessions):
        due = day_due(account.provider, now)
        for day in [due, *_late_files(statements_dir, account.id, due)]:
            if await _reconcile_day(sessions, reconciler, http, statements_dir, account, day, now):
                done += 1
    return done


def _late_files(statements_dir: Path | None, account_id: str, due: date) -> list[date]:
    """Days before ``due`` (up to ``LATE_FILE_DAYS``) whose drop-folder file is there."""
    if statements_dir is None:
        return []
    days = (due - timedelta(days=n) for n in range(1, LATE_FILE_DAYS + 1))
    return [day for day in days if drop_path(statements_dir, account_id, day).is_file()]


async def _reconcile_day(
    sessions: async_sessionmaker[AsyncSession],
    reconciler: Reconciler,
    http: httpx.AsyncClient,
    statements_dir: Path | None,
    account: ProviderAccount,
    day: date,
    now: datetime,
) -> bool:
    """Reconcile one account's day unless its run exists or no statement is there yet;
    whether a run was made (a failed one included)."""
    run_id = run_id_for(account.id, day)
    if await _exists(sessions, run_id):
        return False
    try:
        statement = await find_statement(account, day, statements_dir, http)
    except httpx.HTTPError as exc:
        log.warning("statement_fetch_failed", account_id=account.id, error=str(exc))
        return False
    except StatementError as exc:
        await reconciler.record_failure(run_id, account, day, "scheduled", str(exc))
        log.error("statement_unreadable", account_id=account.id, day=str(day), error=str(exc))
        return True
    if statement is None:
        return False
    try:
        await reconciler.run(
            account.id, statement, day=day, source=f"scheduled: {statement.source}",
            run_id=run_id, now=now,
        )  # fmt: skip
    except IntegrityError:
        return False  # another worker took this day
    except StatementError as exc:
        await reconciler.record_failure(run_id, account, day, "scheduled", str(exc))
    return True
