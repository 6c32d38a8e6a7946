"""Operator changes to merchants, provider accounts and API keys, each with its audit entry in
the caller's transaction: one way for the admin API and the CLI alike."""

from __future__ import annotations

from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.services import accounts, audit
from lipwa.store.tables import ApiKey, Merchant, ProviderAccount
from lipwa.vault import Vault


async def create_merchant(session: AsyncSession, actor: str, data: accounts.MerchantIn) -> Merchant:
    merchant = await accounts.create_merchant(session, data)
    await audit.record(session, actor, "merchant.created", merchant.id, merchant.id)
    return merchant


async def add_account(
    session: AsyncSession, vault: Vault, actor: str, merchant_id: str, data: accounts.AccountIn
) -> ProviderAccount:
    account = await accounts.create_account(session, vault, merchant_id, data)
    detail = {"provider": account.provider, "environment": account.environment}
    await audit.record(session, actor, "account.created", account.id, merchant_id, "", detail)
    return account


async def set_account_status(
    session: AsyncSession,
    actor: str,
    account_id: str,
    status: Literal["active", "disabled"],
    reason: str = "",
    merchant_id: str | None = None,
) -> tuple[ProviderAccount, bool]:
    """(account, whether it changed); an unchanged status writes no audit entry."""
    account, changed = await accounts.set_account_status(session, account_id, status, merchant_id)
    if changed:
        action = "account.disabled" if status == "disabled" else "account.enabled"
        await audit.record(session, actor, action, account.id, account.merchant_id, reason)
    return account, changed


async def create_api_key(
    session: AsyncSession, actor: str, merchant_id: str, mode: Literal["test", "live"]
) -> tuple[ApiKey, str]:
    """(key, the key itself): shown once, to whoever asked; only its hash is stored."""
    key, raw = await accounts.create_api_key(session, merchant_id, mode)
    detail = {"mode": key.mode}
    await audit.record(session, actor, "api_key.created", key.id, merchant_id, "", detail)
    return key, raw


async def revoke_api_key(
    session: AsyncSession,
    actor: str,
    key_id: str,
    reason: str = "",
    merchant_id: str | None = None,
) -> tuple[ApiKey, bool]:
    """(key, whether it changed); revoking twice writes one audit entry."""
    key, changed = await accounts.revoke_api_key(session, key_id, merchant_id)
    if changed:
        detail = {"mode": key.mode}
        await audit.record(
            session, actor, "api_key.revoked", key.id, key.merchant_id, reason, detail
        )
    return key, changed
