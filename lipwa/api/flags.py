"""Admin API: kill switches and rollouts (Bearer LIPWA_ADMIN_TOKEN)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from lipwa.api.deps import AdminDep, ContainerDep
from lipwa.api.errors import ERROR_RESPONSES
from lipwa.services import flags

router = APIRouter(prefix="/admin/v1", tags=["admin"], responses=ERROR_RESPONSES)


class FlagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(description="false switches the path off (503 provider_disabled).")
    percentage: int | None = Field(
        None, ge=0, le=100, description="rollout:<provider> only: share of merchants, 0..100."
    )
    reason: str = Field(min_length=1, max_length=300, description="Why; kept in the audit log.")


@router.get("/flags", summary="List the kill switches and rollouts that are set")
async def list_flags(c: ContainerDep, _: AdminDep) -> dict[str, Any]:
    async with c.sessions() as session:
        rows = await flags.list_flags(session)
    return {
        "object": "list",
        "data": [flags.flag_view(f) for f in rows],
        "refresh_s": c.settings.flags_refresh_s,
    }


@router.put(
    "/flags/{key}",
    summary="Set a kill switch or rollout (every process applies it within flags_refresh_s)",
    description="Keys: `gateway`, `provider:mpesa`, `provider:momo`, `merchant:<id>`, "
    "`account:<id>`, `rollout:mpesa`, `rollout:momo`. Writes a `flag.set` audit entry.",
)
async def put_flag(
    key: Annotated[str, Path(max_length=100, examples=["provider:mpesa"])],
    body: FlagIn,
    c: ContainerDep,
    actor: AdminDep,
) -> dict[str, Any]:
    async with c.sessions() as session, session.begin():
        state = await flags.set_flag(
            session,
            key,
            enabled=body.enabled,
            percentage=body.percentage,
            reason=body.reason,
            actor=actor,
        )
    c.flags.invalidate()
    return flags.flag_view(state)
