"""MoMo account holder of a phone number: is the wallet active, and whose is it.

Two reads at MoMo, in parallel, bounded by ``timeout_s`` together: ``accountholder/…/active``
and ``…/basicuserinfo`` (given + family name). The name is reported only for an active
wallet. A provider error or a slow provider never fails the lookup: ``account_holder`` is then
``null`` (or has no name) and a warning says why.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.providers.base import QueryFailure
from lipwa.services.providers import ProviderRegistry
from lipwa.store.tables import ProviderAccount

log = structlog.get_logger("lipwa.phone_lookup")

LOOKUP_TIMEOUT_S = 3.0


@dataclass
class HolderAnswer:
    account_holder: dict[str, Any] | None
    warnings: list[dict[str, str]] = field(default_factory=list)


def _warning(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message[:300]}


async def momo_account_holder(
    registry: ProviderRegistry,
    account: ProviderAccount,
    msisdn: str,
    timeout_s: float = LOOKUP_TIMEOUT_S,
) -> HolderAnswer:
    client = registry.momo(account)
    try:
        active, name = await asyncio.wait_for(
            asyncio.gather(
                client.account_holder_active(msisdn), client.account_holder_name(msisdn)
            ),
            timeout_s,
        )
    except TimeoutError:
        return HolderAnswer(
            None,
            [
                _warning(
                    "provider_timeout",
                    f"MoMo did not answer the account-holder check within {timeout_s:g} s",
                )
            ],
        )
    except Exception:
        log.exception("account_holder_lookup_failed", account_id=account.id)
        return HolderAnswer(None, [_warning("provider_error", "the account-holder check failed")])
    if isinstance(active, QueryFailure):
        return HolderAnswer(
            None,
            [
                _warning(
                    "provider_error",
                    "MoMo could not check the account holder: "
                    f"{active.error_code}: {active.error_message}",
                )
            ],
        )
    answer = HolderAnswer({"active": active, "name": None})
    if not active:
        return answer
    if isinstance(name, QueryFailure):
        answer.warnings.append(
            _warning(
                "holder_name_unavailable", f"MoMo did not give the holder's name: {name.error_code}"
            )
        )
    else:
        answer.account_holder = {"active": True, "name": name}
    return answer


async def holder_account(session: AsyncSession, lookup: dict[str, Any]) -> ProviderAccount | None:
    """The caller's MoMo account that would serve the looked-up number (the first one)."""
    if lookup.get("provider") != "momo" or not lookup.get("accounts"):
        return None
    return await session.get(ProviderAccount, lookup["accounts"][0])
