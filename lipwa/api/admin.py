"""Admin API: merchants, provider accounts and API keys (Bearer LIPWA_ADMIN_TOKEN)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from lipwa.api.deps import AdminDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.clock import isoformat
from lipwa.services import accounts, audit

router = APIRouter(prefix="/admin/v1", tags=["admin"], responses=ERROR_RESPONSES)


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["test", "live"]


@router.post("/merchants", status_code=201, summary="Create a merchant")
async def create_merchant(
    body: accounts.MerchantIn, c: ContainerDep, actor: AdminDep
) -> dict[str, Any]:
    async with c.sessions() as session, session.begin():
        merchant = await accounts.create_merchant(session, body)
        await audit.record(session, actor, "merchant.created", merchant.id, merchant.id)
        return accounts.merchant_view(merchant)


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
        account = await accounts.create_account(session, c.vault, merchant_id, body)
        detail = {"provider": account.provider, "environment": account.environment}
        await audit.record(session, actor, "account.created", account.id, merchant_id, "", detail)
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
    "/merchants/{merchant_id}/api-keys",
    status_code=201,
    summary="Create an API key; the key is shown once, in this response only",
)
async def create_api_key(
    merchant_id: str, body: ApiKeyIn, c: ContainerDep, actor: AdminDep
) -> dict[str, Any]:
    async with c.sessions() as session, session.begin():
        key, raw = await accounts.create_api_key(session, merchant_id, body.mode)
        detail = {"mode": key.mode}
        await audit.record(session, actor, "api_key.created", key.id, merchant_id, "", detail)
        return {
            "id": key.id,
            "object": "api_key",
            "merchant_id": key.merchant_id,
            "mode": key.mode,
            "key": raw,
            "hint": key.hint,
            "created_at": isoformat(key.created_at),
        }
