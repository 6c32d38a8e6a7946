"""Kill switches and percentage rollouts, stored in the ``flags`` table.

A missing flag means "on". ``gateway``, ``provider:<p>``, ``merchant:<id>`` and ``account:<id>``
switch payment requests off when ``enabled`` is false; ``rollout:<p>`` lets ``percentage``% of
merchants (a stable hash of the merchant id, ``lipwa.domain.flags``) use provider ``p``.

Each process keeps the flags in a ``FlagCache`` and re-reads the table when its copy is older
than ``flags_refresh_s`` (default 2 s), so a change made by any process or the CLI takes effect
everywhere within that delay; the process that made the change sees it at once. Switches gate
new payment requests and every send of a payout or refund (``send_refusal``): status checks,
callbacks and webhooks of payments already made go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import isoformat, utcnow
from lipwa.domain.errors import DomainError
from lipwa.domain.flags import in_rollout, parse_flag_key
from lipwa.domain.money import PROVIDER_NAMES
from lipwa.errors import ApiError
from lipwa.metrics import GUARD_REFUSALS
from lipwa.providers.base import SendResult
from lipwa.services import audit
from lipwa.services.accounts import Caller
from lipwa.services.collect import PaymentIn, Plan
from lipwa.store.tables import Flag, Merchant, ProviderAccount

log = structlog.get_logger("lipwa.flags")


@dataclass(frozen=True)
class FlagState:
    key: str
    enabled: bool
    percentage: int | None
    reason: str
    updated_by: str
    updated_at: datetime

    @classmethod
    def of(cls, row: Flag) -> FlagState:
        return cls(row.key, row.enabled, row.percentage, row.reason, row.updated_by, row.updated_at)


def flag_view(flag: FlagState) -> dict[str, Any]:
    return {
        "key": flag.key,
        "object": "flag",
        "enabled": flag.enabled,
        "percentage": flag.percentage,
        "reason": flag.reason,
        "updated_by": flag.updated_by,
        "updated_at": isoformat(flag.updated_at),
    }


# ----- reading: one cached snapshot per process ------------------------------------------------
class FlagCache:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], refresh_s: float) -> None:
        self._sessions = sessions
        self.refresh_s = refresh_s
        self._flags: dict[str, FlagState] | None = None
        self._loaded_at = float("-inf")
        self._generation = 0  # bumped by invalidate(): a read begun before it is not fresh

    def invalidate(self) -> None:
        """Forget the snapshot: the next read goes to the database."""
        self._generation += 1
        self._loaded_at = float("-inf")

    async def current(self, session: AsyncSession | None = None) -> Mapping[str, FlagState]:
        """The flags, re-read when the copy is older than ``refresh_s``. Pass the caller's
        ``session`` when it has one open: on SQLite a second connection would wait for it.
        Concurrent refreshes are harmless (the same small read), so there is no lock."""
        now = asyncio.get_running_loop().time()
        if self._flags is not None and now - self._loaded_at < self.refresh_s:
            return self._flags
        generation = self._generation
        try:
            if session is not None:
                flags = await _load(session)
            else:
                async with self._sessions() as own:
                    flags = await _load(own)
        except Exception:
            if self._flags is None:
                raise
            log.warning("flags_refresh_failed_using_stale_copy", exc_info=True)
            return self._flags
        if generation == self._generation or self._flags is None:
            self._flags = flags
            self._loaded_at = now if generation == self._generation else float("-inf")
        return flags

    async def refuse_if_off(
        self, session: AsyncSession, merchant_id: str, provider: str, account_id: str
    ) -> None:
        """Raise the 503 when a kill switch or rollout keeps this path off (``switch_refusal``)."""
        refusal = switch_refusal(await self.current(session), merchant_id, provider, account_id)
        if refusal is not None:
            raise refusal


async def _load(session: AsyncSession) -> dict[str, FlagState]:
    return {row.key: FlagState.of(row) for row in await session.scalars(select(Flag))}


# ----- writing: one flag, with its audit entry, in the caller's transaction -------------------
async def list_flags(session: AsyncSession) -> list[FlagState]:
    rows = await session.scalars(select(Flag).order_by(Flag.key))
    return [FlagState.of(row) for row in rows]


async def _merchant_of(session: AsyncSession, kind: str, subject: str | None) -> str | None:
    if kind == "merchant" and subject is not None:
        if await session.get(Merchant, subject) is None:
            raise DomainError("unknown_flag_target", f"No merchant {subject}", param="key")
        return subject
    if kind == "account" and subject is not None:
        account = await session.get(ProviderAccount, subject)
        if account is None:
            raise DomainError("unknown_flag_target", f"No provider account {subject}", "key")
        return account.merchant_id
    return None


async def set_flag(
    session: AsyncSession,
    key: str,
    *,
    enabled: bool,
    reason: str,
    actor: str,
    percentage: int | None = None,
) -> FlagState:
    """Create or change one flag and write its ``flag.set`` audit entry (same transaction)."""
    parsed = parse_flag_key(key)
    if not reason.strip():
        raise DomainError("reason_required", "Say why the flag changes (reason).", "reason")
    if parsed.kind == "rollout":
        percentage = 100 if percentage is None else percentage
        if not 0 <= percentage <= 100:
            raise DomainError(
                "invalid_percentage", "percentage is 0..100 (share of merchants)", "percentage"
            )
    elif percentage is not None:
        raise DomainError(
            "invalid_percentage", "only rollout:<provider> flags take a percentage", "percentage"
        )
    merchant_id = await _merchant_of(session, parsed.kind, parsed.subject)
    key = str(parsed)
    row = await session.get(Flag, key, with_for_update=True)
    before = flag_view(FlagState.of(row)) if row is not None else None
    now = utcnow()
    if row is None:
        row = Flag(key=key)
        session.add(row)
    row.enabled = enabled
    row.percentage = percentage
    row.reason = reason.strip()[:300]
    row.updated_by = actor[:100]
    row.updated_at = now
    await session.flush()
    state = FlagState.of(row)
    await audit.record(
        session,
        actor,
        "flag.set",
        key,
        merchant_id=merchant_id,
        reason=row.reason,
        detail={"before": before, "after": flag_view(state)},
    )
    return state


# ----- deciding -------------------------------------------------------------------------------
def _refusal(key: str, what: str, flag: FlagState) -> ApiError:
    reason = f": {flag.reason}" if flag.reason else ""
    return ApiError(
        503,
        "provider_error",
        "provider_disabled",
        f"{what} (switch '{key}'){reason}",
        extra={"switch": key},
    )


def switch_refusal(
    flags: Mapping[str, FlagState], merchant_id: str, provider: str, account_id: str
) -> ApiError | None:
    """The refusal for a payment through ``account_id`` of ``provider``, or None to go on."""
    name = PROVIDER_NAMES.get(provider, provider)
    checks = (
        ("gateway", "Mobile money payments are switched off on this gateway"),
        (f"provider:{provider}", f"{name} payments are switched off"),
        (f"merchant:{merchant_id}", "Payments for this merchant are switched off"),
        (f"account:{account_id}", f"This merchant's {name} account {account_id} is switched off"),
    )
    for key, what in checks:
        flag = flags.get(key)
        if flag is not None and not flag.enabled:
            return _refusal(key, what, flag)
    rollout = flags.get(f"rollout:{provider}")
    if rollout is not None:
        share = rollout.percentage if rollout.percentage is not None else 100
        share = share if rollout.enabled else 0
        if not in_rollout(merchant_id, provider, share):
            return _refusal(
                f"rollout:{provider}",
                f"{name} is being rolled out to {share}% of merchants and this merchant is not "
                "included yet",
                rollout,
            )
    return None


async def send_refusal(
    session: AsyncSession, flags: FlagCache | None, merchant_id: str, account: ProviderAccount
) -> ApiError | None:
    """Why no money may be sent from ``account`` now, or None: an operator disabled it (409
    ``account_disabled``) or a kill switch keeps its path off (503). Checked before every send
    of a payout or refund, the first and any recovery makes."""
    if account.status != "active":
        return ApiError(
            409,
            "invalid_request_error",
            "account_disabled",
            f"The {account.provider} account {account.id} is disabled: nothing is sent from it "
            "until it is enabled again",
        )
    if flags is None:
        return None
    return switch_refusal(await flags.current(session), merchant_id, account.provider, account.id)


class KillSwitchGuard:
    """Refuses payments on a switched-off path (first guard: cheapest, answers 503)."""

    def __init__(self, flags: FlagCache) -> None:
        self._flags = flags

    async def check(
        self, session: AsyncSession, caller: Caller, plan: Plan, data: PaymentIn
    ) -> None:
        account = plan.account
        try:
            await self._flags.refuse_if_off(
                session, caller.merchant_id, account.provider, account.id
            )
        except ApiError as refusal:
            GUARD_REFUSALS.labels(code=refusal.code).inc()
            raise

    async def observe(self, plan: Plan, result: SendResult) -> None:
        return None
