"""Security of the HTML pages: response headers, signed sessions, CSRF tokens.

* Headers (pages only; the JSON API and /docs keep theirs): a strict Content-Security-Policy
  without 'unsafe-inline' (scripts and styles come from /static only, charts are inline SVG with
  presentation attributes), frame-ancestors 'none' + X-Frame-Options DENY, nosniff,
  Referrer-Policy same-origin, no caching of authenticated pages.
* Sessions: a cookie signed with itsdangerous (never the API key or admin token itself): the
  role, the merchant and mode for an API-key session with the key's id (re-checked on every
  request, so a revoked key ends its sessions), a fingerprint of the admin token (rotating the
  token ends admin sessions), and the sign-in time. Idle 30 min (re-signed on each page),
  at most 8 h. HttpOnly, SameSite=Lax, Secure when the public URL is https.
* CSRF: signed double submit. A random nonce lives in an HttpOnly SameSite=Strict cookie; forms
  carry HMAC(secret, nonce); a POST is accepted only when the field matches the cookie's nonce.
  An attacker can neither read the cookie nor compute the field without the server secret.
Signing secrets are derived from the vault's key ring (LIPWA_ENCRYPTION_KEYS), one per key, so
there is no new setting to manage: the active key's secret signs, every key's secret verifies.
Adding a key (README, "Rotating the encryption key") keeps sessions and payers' /c/ links
working; removing a key ends what it signed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lipwa.config import Settings
from lipwa.vault import KeyRing

SESSION_COOKIE = "lipwa_session"
CSRF_COOKIE = "lipwa_csrf"
LANG_COOKIE = "lipwa_lang"
IDLE_S = 30 * 60
MAX_S = 8 * 3600

# Paths served by lipwa.web: they get the page headers below.
PAGE_PREFIXES = ("/l/", "/c/", "/signin", "/signout", "/merchants", "/dashboard", "/static/web/")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "cross-origin-opener-policy": "same-origin",
}


class PageHeaders:
    """Pure ASGI middleware (streams such as server-sent events pass through untouched)."""

    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(PAGE_PREFIXES):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in PAGE_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                if self.hsts:
                    headers["strict-transport-security"] = "max-age=31536000"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _secrets(settings: Settings) -> list[bytes]:
    """One secret per vault key, the active key's last (itsdangerous signs with the last)."""
    text = settings.encryption_keys.get_secret_value() if settings.encryption_keys else ""
    if text.strip():
        ring = KeyRing.parse(text)
        keys = [key for version, key in ring.keys.items() if version != ring.active_version]
        keys.append(ring.keys[ring.active_version])
    else:
        # No vault key: the gateway cannot start anyway; keep pages usable in isolated tests.
        keys = [b"lipwa-unconfigured"]
    return [hmac.new(key, b"lipwa.web.v1", hashlib.sha256).digest() for key in keys]


Role = Literal["admin", "merchant"]


@dataclass(frozen=True)
class Session:
    role: Role
    issued_at: float
    merchant_id: str | None = None
    mode: str | None = None
    key_id: str | None = None
    admin_fp: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_see(self, merchant_id: str) -> bool:
        return self.is_admin or self.merchant_id == merchant_id


class WebSecurity:
    """Signing for one process; built from settings, kept on the app state."""

    def __init__(self, settings: Settings) -> None:
        self._secrets = _secrets(settings)
        self._sessions = URLSafeTimedSerializer(self._secrets, salt="lipwa.session")
        self._tokens = URLSafeSerializer(self._secrets, salt="lipwa.checkout")
        self.secure = settings.public_url.startswith("https://")
        self._admin = settings.admin_token

    # ----- sessions -----------------------------------------------------------------------
    def admin_fingerprint(self, secret: bytes | None = None) -> str | None:
        """The admin token's fingerprint under ``secret`` (the active key's by default)."""
        if self._admin is None:
            return None
        raw = self._admin.get_secret_value().encode()
        key = self._secrets[-1] if secret is None else secret
        return hmac.new(key, b"admin:" + raw, hashlib.sha256).hexdigest()[:32]

    def check_admin_token(self, given: str) -> bool:
        if self._admin is None:
            return False
        expected = self._admin.get_secret_value().encode()
        return hmac.compare_digest(given.encode(), expected)

    def read_session(self, request: Request) -> Session | None:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            data: dict[str, Any] = self._sessions.loads(raw, max_age=IDLE_S)
        except BadSignature:  # also SignatureExpired: idle too long
            return None
        try:
            session = Session(
                role=data["r"],
                issued_at=float(data["iat"]),
                merchant_id=data.get("m"),
                mode=data.get("mo"),
                key_id=data.get("k"),
                admin_fp=data.get("a"),
            )
        except (KeyError, TypeError, ValueError):
            return None
        if time.time() - session.issued_at > MAX_S:
            return None
        if session.role == "admin":
            given = session.admin_fp or ""
            known = [self.admin_fingerprint(secret) or "" for secret in self._secrets]
            if self._admin is None or not any(hmac.compare_digest(fp, given) for fp in known):
                return None
        elif session.role != "merchant" or not session.merchant_id:
            return None
        return session

    def write_session(self, response: Response, session: Session) -> None:
        """(Re-)sign the session: each page view restarts the idle clock."""
        data = {
            "r": session.role,
            "iat": session.issued_at,
            "m": session.merchant_id,
            "mo": session.mode,
            "k": session.key_id,
            "a": session.admin_fp,
        }
        response.set_cookie(
            SESSION_COOKIE,
            self._sessions.dumps(data),
            max_age=IDLE_S,
            httponly=True,
            samesite="lax",
            secure=self.secure,
            path="/",
        )

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", secure=self.secure, httponly=True)

    # ----- CSRF ---------------------------------------------------------------------------
    def csrf_nonce(self, request: Request) -> tuple[str, bool]:
        """The request's nonce, and whether it is new (then it must be set as a cookie)."""
        nonce = request.cookies.get(CSRF_COOKIE, "")
        if 16 <= len(nonce) <= 64:
            return nonce, False
        return secrets.token_urlsafe(24), True

    def csrf_token(self, nonce: str, secret: bytes | None = None) -> str:
        """The form field for ``nonce`` under ``secret`` (the active key's by default)."""
        key = self._secrets[-1] if secret is None else secret
        return hmac.new(key, b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()

    def set_csrf_cookie(self, response: Response, nonce: str) -> None:
        response.set_cookie(
            CSRF_COOKIE, nonce, httponly=True, samesite="strict", secure=self.secure, path="/"
        )

    def csrf_ok(self, request: Request, field: str | None) -> bool:
        nonce = request.cookies.get(CSRF_COOKIE, "")
        if not nonce or not field:
            return False
        given = field.encode()  # bytes: compare_digest refuses non-ASCII text with a TypeError
        return any(
            hmac.compare_digest(self.csrf_token(nonce, s).encode(), given) for s in self._secrets
        )

    # ----- checkout tokens: an unguessable handle on one payment for its payer ------------
    def payment_token(self, payment_id: str) -> str:
        return self._tokens.dumps(payment_id)

    def payment_id(self, token: str) -> str | None:
        try:
            value = self._tokens.loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None
