"""Who is looking at a page: the signed session, re-checked against the database."""

from __future__ import annotations

from urllib.parse import quote

from fastapi.responses import RedirectResponse
from starlette.requests import Request

from lipwa.container import Container
from lipwa.services.modes import mode_refusal
from lipwa.store.tables import ApiKey
from lipwa.web.render import security
from lipwa.web.security import Session


async def current_session(request: Request, c: Container) -> Session | None:
    session = security(request).read_session(request)
    if session is None or session.is_admin:
        return session
    # An API-key session lives only as long as its key: revoked or deleted keys sign out.
    async with c.sessions() as db:
        key = await db.get(ApiKey, session.key_id or "")
    if key is None or key.revoked_at is not None or key.merchant_id != session.merchant_id:
        return None
    if mode_refusal(c.settings.mode, key.mode) is not None:
        return None
    return session


def to_signin(request: Request) -> RedirectResponse:
    target = request.url.path
    return RedirectResponse(f"/signin?next={quote(target, safe='/')}", status_code=303)


def safe_next(target: str | None, fallback: str) -> str:
    """Only local paths: an open redirect would make the sign-in page a phishing tool."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return fallback
