"""Merchant API: phone lookup (which network, which provider, which of your accounts)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from lipwa.api.deps import CallerDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.services.holder_lookup import holder_account, momo_account_holder
from lipwa.services.phone_lookup import PhoneLookupIn, lookup_phone

router = APIRouter(prefix="/v1", tags=["phones"], responses=ERROR_RESPONSES)


@router.post(
    "/phone-lookup",
    summary="Normalise a number and tell which network, provider and accounts would serve it",
    description="Reads only (no Idempotency-Key needed). `supported` is true when one of your "
    "active accounts of this key's mode can charge the number. MoMo numbers also get "
    "`account_holder`: whether the wallet is active and, when MoMo gives it, the holder's "
    "name, so you can confirm before prompting; if MoMo errs or is slow (over ~3 s) it is "
    "`null` and `warnings` says why (send `check_account_holder: false` to skip the check).",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "examples": {
                        "momo_rwanda": {
                            "summary": "A Rwandan MTN number",
                            "value": {"phone": "0781234567", "country": "RW"},
                        },
                        "mpesa": {
                            "summary": "A Safaricom number",
                            "value": {"phone": "0708374149", "country": "KE"},
                        },
                    }
                }
            }
        },
        "responses": {
            "200": {
                "content": {
                    "application/json": {
                        "example": {
                            "object": "phone_lookup",
                            "e164": "+250781234567",
                            "msisdn": "250781234567",
                            "country": "RW",
                            "network": "mtn_rw",
                            "provider": "momo",
                            "accounts": ["acct_0lq3x8k2a9f1c2d3e4f5g6h7"],
                            "supported": True,
                            "account_holder": {"active": True, "name": "Jean Uwimana"},
                            "warnings": [],
                        }
                    }
                }
            }
        },
    },
)
async def phone_lookup(body: PhoneLookupIn, c: ContainerDep, caller: CallerDep) -> dict[str, Any]:
    async with c.sessions() as session:
        result = await lookup_phone(session, caller, body, c.settings.prefix_overrides)
        account = await holder_account(session, result) if body.check_account_holder else None
    if result["provider"] == "momo":  # MoMo numbers: {"active", "name"} or null, warnings
        result.update(account_holder=None, warnings=[])
    if account is not None:  # outside the session: a provider call
        answer = await momo_account_holder(c.registry, account, result["msisdn"])
        result.update(account_holder=answer.account_holder, warnings=answer.warnings)
    return result
