"""Request dependencies: the container, the calling merchant, the admin."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.container import Container
from lipwa.errors import ApiError
from lipwa.services.accounts import Caller
from lipwa.services.modes import mode_refusal
from lipwa.services.ratelimit import check_api_key

bearer = HTTPBearer(auto_error=False, description="API key `lw_test_…` / `lw_live_…`")
admin_bearer = HTTPBearer(auto_error=False, description="LIPWA_ADMIN_TOKEN", scheme_name="admin")


async def container(request: Request) -> Container:
    # async: FastAPI would run a plain function in its thread pool, a hop on every request.
    found: Container = request.app.state.container
    return found


async def session(c: Annotated[Container, Depends(container)]) -> AsyncIterator[AsyncSession]:
    async with c.sessions() as s:
        yield s


def _unauthorized(message: str) -> ApiError:
    return ApiError(
        401,
        "authentication_error",
        "invalid_api_key",
        message,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def caller(
    c: Annotated[Container, Depends(container)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    if credentials is None:
        raise _unauthorized("Send your API key as 'Authorization: Bearer lw_test_…'")
    found = await c.api_keys.authenticate(c.sessions, credentials.credentials)
    if found is None:
        raise _unauthorized("Invalid API key")
    refusal = mode_refusal(c.settings.mode, found.mode)
    if refusal is not None:
        raise refusal
    await check_api_key(c.rate_limits, c.settings.rate_limit_api_key, found)
    return found


async def admin(
    c: Annotated[Container, Depends(container)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
) -> str:
    expected = c.settings.admin_token
    if expected is None:
        raise ApiError(
            403, "permission_error", "admin_disabled", "The admin API is off: set LIPWA_ADMIN_TOKEN"
        )
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise ApiError(
            401,
            "authentication_error",
            "invalid_admin_token",
            "Invalid admin token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return "admin"


CallerDep = Annotated[Caller, Depends(caller)]
AdminDep = Annotated[str, Depends(admin)]
ContainerDep = Annotated[Container, Depends(container)]
SessionDep = Annotated[AsyncSession, Depends(session)]
