"""Admin API: merchants, provider accounts and API keys (Bearer LIPWA_ADMIN_TOKEN)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from lipwa.api.deps import AdminDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.container import Container
from lipwa.services import accounts, merchant_admin

router = APIRouter(prefix="/admin/v1", tags=["admin"], responses=ERROR_RESPONSES)


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["test", "live"]


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=300, description="Why (kept in the audit log).")


@router.post("/merchants", status_code=201, summary="Create a merchant")
async def create_merchant(
    body: accounts.MerchantIn, c: ContainerDep, actor: AdminDep
) -> dict[str, Any]:
    async with c.sessions() as session, session.begin():
        merchant = await merchant_admin.create_merchant(session, actor, body)
        return accounts.merchant_view(merchant)


@router.get("/merchants", summary="List merchants, newest first")
async def list_merchants(
    c: ContainerDep, _: AdminDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> dict[str, Any]:
    async with c.sessions() as session:
        rows = await accounts.list_merchants(session, limit)
        return {"object": "list", "data": [accounts.merchant_view(m) for m in rows]}


@router.get("/merchants/{merchant_id}", summary="Read a merchant")
async def get_merchant(merchant_id: str, c: ContainerDep, _: AdminDep) -> dict[str, Any]:
    async with c.sessions() as session:
        return accounts.merchant_view(await accounts.get_merchant(session, merchant_id))


@router.post(
    "/merchants/{merchant_id}/accounts",
    status_code=201,
    summary="Add a provider account (credentials are sealed; reads show them masked)",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "examples": {
                        "mpesa_paybill_sandbox": {
                            "summary": "M-Pesa paybill in sandbox (fake keys)",
                            "value": {
                                "provider": "mpesa",
                                "environment": "sandbox",
                                "credentials": {
                                    "consumer_key": "FAKE-consumer-key",
                                    "consumer_secret": "FAKE-consumer-secret",
                                    "shortcode": "174379",
                                    "kind": "paybill",
                                    "passkey": "FAKE-passkey",
                                },
                            },
                        },
                        "momo_rwanda": {
                            "summary": "MTN MoMo Rwanda (fake keys)",
                            "value": {
                                "provider": "momo",
                                "environment": "production",
                                "credentials": {
                                    "api_user": "00000000-0000-4000-8000-000000000000",
                                    "api_key": "FAKE-api-key",
                                    "subscription_keys": {"collection": "FAKE-collection-key"},
                                    "target_environment": "mtnrwanda",
                                    "currency": "RWF",
                                },
                            },
                        },
                    }
                }
            }
        }
    },
)
async def create_account(
    merchant_id: str, body: accounts.AccountIn, c: ContainerDep, actor: AdminDep
) -> dict[str, Any]:
    async with c.sessions() as session, session.begin():
        account = await merchant_admin.add_account(session, c.vault, actor, merchant_id, body)
        return accounts.account_view(account, c.settings.public_url)


@router.get("/merchants/{merchant_id}/accounts", summary="List a merchant's provider accounts")
async def list_accounts(merchant_id: str, c: ContainerDep, _: AdminDep) -> dict[str, Any]:
    async with c.sessions() as session:
        await accounts.get_merchant(session, merchant_id)
        rows = await accounts.list_accounts(session, merchant_id)
        return {
            "object": "list",
            "data": [accounts.account_view(a, c.settings.public_url) for a in rows],
        }


@router.post(
    "/merchants/{merchant_id}/accounts/{account_id}/disable",
    summary="Disable a provider account: no new payments, payouts or lookups through it; its "
    "open payments are still settled",
)
async def disable_account(
    merchant_id: str,
    account_id: str,
    c: ContainerDep,
    actor: AdminDep,
    body: ReasonIn | None = None,
) -> dict[str, Any]:
    return await _set_account_status(c, actor, merchant_id, account_id, "disabled", body)


@router.post(
    "/merchants/{merchant_id}/accounts/{account_id}/enable",
    summary="Enable a disabled provider account again",
)
async def enable_account(
    merchant_id: str,
    account_id: str,
    c: ContainerDep,
    actor: AdminDep,
    body: ReasonIn | None = None,
) -> dict[str, Any]:
    return await _set_account_status(c, actor, merchant_id, account_id, "active", body)


async def _set_account_status(
    c: Container,
    actor: str,
    merchant_id: str,
    account_id: str,
    status: Literal["active", "disabled"],
    body: ReasonIn | None,
) -> dict[str, Any]:
    reason = body.reason if body else ""
    async with c.sessions() as session, session.begin():
        account, _ = await merchant_admin.set_account_status(
            session, actor, account_id, status, reason, merchant_id
        )
        return accounts.account_view(account, c.settings.public_url)


@router.post(
    "/merchants/{merchant_id}/api-keys",
    status_code=201,
    summary="Create an API key; the key is shown once, in this response only",
)
async def create_api_key(
    merchant_id: str, body: ApiKeyIn, c: ContainerDep, actor: AdminDep
) -> dict[str, Any]:
    async with c.sessions() as session, session.begin():
        key, raw = await merchant_admin.create_api_key(session, actor, merchant_id, body.mode)
        return {**accounts.api_key_view(key), "key": raw}


@router.get(
    "/merchants/{merchant_id}/api-keys",
    summary="List a merchant's API keys, revoked ones included (hints only, never the key)",
)
async def list_api_keys(merchant_id: str, c: ContainerDep, _: AdminDep) -> dict[str, Any]:
    async with c.sessions() as session:
        rows = await accounts.list_api_keys(session, merchant_id)
        return {"object": "list", "data": [accounts.api_key_view(k) for k in rows]}


@router.post(
    "/merchants/{merchant_id}/api-keys/{key_id}/revoke",
    summary="Revoke an API key for good: refused at once by this process, by every process "
    "within 10 s",
)
async def revoke_api_key(
    merchant_id: str,
    key_id: str,
    c: ContainerDep,
    actor: AdminDep,
    body: ReasonIn | None = None,
) -> dict[str, Any]:
    reason = body.reason if body else ""
    async with c.sessions() as session, session.begin():
        key, _ = await merchant_admin.revoke_api_key(session, actor, key_id, reason, merchant_id)
    c.api_keys.forget(key.key_hash)
    return accounts.api_key_view(key)
