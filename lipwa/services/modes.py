"""Which provider environments a gateway serves (``LIPWA_MODE``), checked twice.

- At start-up: a ``sandbox`` gateway refuses to start while live API keys or production
  accounts are active, a ``production`` one while test keys or sandbox accounts are; the
  message lists what to revoke or disable (or set ``LIPWA_MODE=mixed``).
- At request time: a key of a mode the gateway does not serve gets 403 (``live_mode_disabled``
  / ``test_mode_disabled``), e.g. a live key created after start-up on a sandbox gateway.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.errors import ApiError
from lipwa.store.tables import ApiKey, ProviderAccount

# mode → (the key mode it refuses, the account environment it refuses)
_FOREIGN = {"sandbox": ("live", "production"), "production": ("test", "sandbox")}


async def mode_conflicts(session: AsyncSession, mode: str) -> list[str]:
    """What stops a ``mode`` gateway from starting (empty: nothing; ``mixed`` never conflicts)."""
    if mode not in _FOREIGN:
        return []
    key_mode, environment = _FOREIGN[mode]
    keys = await session.scalar(
        select(func.count())
        .select_from(ApiKey)
        .where(ApiKey.mode == key_mode, ApiKey.revoked_at.is_(None))
    )
    accounts = await session.scalar(
        select(func.count())
        .select_from(ProviderAccount)
        .where(ProviderAccount.environment == environment, ProviderAccount.status == "active")
    )
    problems = []
    if keys:
        problems.append(f"{keys} active {key_mode} API key(s) (revoke them: lipwa api-keys revoke)")
    if accounts:
        problems.append(
            f"{accounts} active {environment} provider account(s) (disable them: "
            "lipwa accounts disable)"
        )
    return problems


async def mode_problem(session: AsyncSession, mode: str) -> str | None:
    """Why a ``mode`` gateway must not start on this database, or None."""
    problems = await mode_conflicts(session, mode)
    if not problems:
        return None
    return (
        f"LIPWA_MODE={mode} but the database has {' and '.join(problems)}; fix that or set "
        "LIPWA_MODE=mixed"
    )


def mode_refusal(mode: str, key_mode: str) -> ApiError | None:
    """The 403 for a ``key_mode`` key on a ``mode`` gateway, or None."""
    foreign = _FOREIGN.get(mode)
    if foreign is None or key_mode != foreign[0]:
        return None
    return ApiError(
        403,
        "permission_error",
        f"{key_mode}_mode_disabled",
        f"This gateway serves {mode} only (LIPWA_MODE={mode}); {key_mode} API keys are refused",
    )
