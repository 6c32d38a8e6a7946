"""C2B (customers paying the paybill/till on their own): Daraja's validation and confirmation
requests in, and the admin routes that register the URLs and set the validation rules."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from lipwa import metrics
from lipwa.api.deps import AdminDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.container import Container
from lipwa.providers.mpesa.c2b import CONFIRMATION_REPLY
from lipwa.services.c2b_inbound import CONFIRM, VALIDATE, C2bInbound
from lipwa.services.c2b_register import C2bRegistrar
from lipwa.services.inbound import Inbound

callbacks_router = APIRouter(prefix="/callbacks", include_in_schema=False)
admin_router = APIRouter(prefix="/admin/v1", tags=["admin"], responses=ERROR_RESPONSES)

REGISTRATION_EXAMPLE: dict[str, Any] = {
    "object": "c2b_registration",
    "account_id": "acct_0lq3x8k2a9f1c2d3e4f5g6h7",
    "shortcode": "600000",
    "registered": True,
    "response_type": "Completed",
    "registered_at": "2026-01-31T08:00:00Z",
    "validation_url": "https://pay.example.com/callbacks/<account token>/c2b-validate",
    "confirmation_url": "https://pay.example.com/callbacks/<account token>/c2b-confirm",
    "rules": {
        "accept_unknown_accounts": False,
        "account_pattern": "^INV\\d{3,8}$",
        "min_amount": "10",
        "max_amount": "150000",
    },
    "provider_conversation_id": "5118-111210482-1",
}


def registrar(c: Container) -> C2bRegistrar:
    return C2bRegistrar(c.sessions, c.registry, c.settings.public_url)


async def _inbound(request: Request, token: str, kind: str, ident: str | None = None) -> Inbound:
    return Inbound(
        token=token,
        kind=kind,
        ident=ident,
        method=request.method,
        headers=dict(request.headers),
        body=await request.body(),
        remote_addr=request.client.host if request.client else None,
    )


# ----- Daraja → Lipwa ----------------------------------------------------------------------
@callbacks_router.post("/{token}/c2b-validate")
async def c2b_validate(token: str, request: Request, c: ContainerDep) -> Response:
    with metrics.callback_timer(VALIDATE):
        answer = await C2bInbound(c.sessions).validate(await _inbound(request, token, VALIDATE))
    return JSONResponse(answer.body, status_code=answer.status)


@callbacks_router.post("/{token}/c2b-confirm")
async def c2b_confirm(token: str, request: Request, c: ContainerDep) -> Response:
    with metrics.callback_timer(CONFIRM):
        await C2bInbound(c.sessions).confirm(await _inbound(request, token, CONFIRM))
    return JSONResponse(CONFIRMATION_REPLY)


# ----- admin -------------------------------------------------------------------------------
class RegisterC2bIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    response_type: Literal["Completed", "Cancelled"] = Field(
        "Completed",
        description="What Daraja does when the validation URL does not answer in time "
        "(about 8 s): complete the payment or cancel it.",
    )


class C2bRulesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accept_unknown_accounts: bool = Field(
        True,
        description="Accept account numbers that match no open order and not account_pattern.",
    )
    account_pattern: str | None = Field(
        None, max_length=200, description="Regular expression a known account number matches."
    )
    min_amount: str | None = Field(None, description="Smallest amount accepted (KES).")
    max_amount: str | None = Field(None, description="Largest amount accepted (KES).")


@admin_router.post(
    "/accounts/{account_id}/register-c2b",
    summary="Register an M-Pesa account's C2B validation and confirmation URLs with Daraja",
    description="Registers `<public URL>/callbacks/<account token>/c2b-validate` and "
    "`…/c2b-confirm` (Daraja C2B register URL v2). The URLs are checked against Daraja's URL "
    'rules first (no "mpesa", "safaricom", "exe", "exec", "cmd", "sql", "query" in any case): '
    "a URL that breaks them is refused with `c2b_url_refused`. Production registers once: "
    "`409 c2b_already_registered` when Safaricom already has URLs for the shortcode.",
    responses={200: {"content": {"application/json": {"example": REGISTRATION_EXAMPLE}}}},
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "examples": {
                        "completed": {
                            "summary": "Complete payments when validation is unreachable",
                            "value": {"response_type": "Completed"},
                        }
                    }
                }
            }
        }
    },
)
async def register_c2b(
    account_id: str, c: ContainerDep, actor: AdminDep, body: RegisterC2bIn | None = None
) -> dict[str, Any]:
    chosen = body.response_type if body else "Completed"
    return await registrar(c).register(account_id, chosen, actor)


@admin_router.put(
    "/accounts/{account_id}/c2b-rules",
    summary="Set how an M-Pesa account answers C2B validation requests",
    description="Amount outside min..max → `C2B00013`. An account number is known when it "
    "matches an open order (a pending prompt payment with that reference, or an active payment "
    "link's slug or id) or `account_pattern`; unknown ones are refused with `C2B00012` unless "
    "`accept_unknown_accounts` is true. Validation requests reach Lipwa only if Safaricom "
    "enabled External Validation for the shortcode.",
    responses={200: {"content": {"application/json": {"example": REGISTRATION_EXAMPLE}}}},
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "examples": {
                        "invoices_only": {
                            "summary": "Only invoice numbers, 10..150,000 KES",
                            "value": {
                                "accept_unknown_accounts": False,
                                "account_pattern": "^INV\\d{3,8}$",
                                "min_amount": "10",
                                "max_amount": "150000",
                            },
                        }
                    }
                }
            }
        }
    },
)
async def set_c2b_rules(
    account_id: str, body: C2bRulesIn, c: ContainerDep, actor: AdminDep
) -> dict[str, Any]:
    return await registrar(c).set_rules(account_id, body.model_dump(), actor)


@admin_router.get(
    "/accounts/{account_id}/c2b",
    summary="Read an M-Pesa account's C2B URLs, registration and validation rules",
    responses={200: {"content": {"application/json": {"example": REGISTRATION_EXAMPLE}}}},
)
async def get_c2b(account_id: str, c: ContainerDep, _: AdminDep) -> dict[str, Any]:
    return await registrar(c).describe(account_id)
