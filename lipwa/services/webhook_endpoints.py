"""Webhook endpoints: where a merchant wants its events, and the secrets that sign them.

A signing secret is shown once, when it is made (create, rotate), and kept sealed by the vault,
bound to the endpoint id: ``{"current": s, "previous": [{"secret": p, "expires_at": iso}]}``.
During a rotation the previous secret keeps signing until it expires, so a merchant can roll
the new one out without dropping a webhook.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import isoformat, utcnow
from lipwa.domain.ids import new_id
from lipwa.errors import ApiError, invalid, not_found
from lipwa.services import audit
from lipwa.services.accounts import Caller
from lipwa.store.tables import IdempotencyKey, WebhookDelivery, WebhookEndpoint
from lipwa.vault import Vault

# Every type Lipwa emits (transitions.py, money_states.py, payouts.py, refunds.py).
EVENT_TYPES = (
    "payment.created",
    "payment.succeeded",
    "payment.failed",
    "payment.unknown",
    "payout.created",
    "payout.awaiting_approval",
    "payout.cancelled",
    "payout.pending",
    "payout.succeeded",
    "payout.failed",
    "payout.unknown",
    "refund.created",
    "refund.succeeded",
    "refund.failed",
    "refund.unknown",
)
ALL_EVENTS = "*"
SECRET_PREFIX = "whsec_"
ROTATION_OVERLAP = timedelta(hours=24)
MAX_ROTATION_OVERLAP_S = 7 * 24 * 3600


# ----- inputs -----------------------------------------------------------------------------------
class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=1000, description="http(s) URL; https in live mode")
    event_types: list[str] = Field(
        min_length=1, description=f"Any of {', '.join(EVENT_TYPES)}, or ['*'] for all"
    )
    description: str = Field("", max_length=200)

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t != ALL_EVENTS and t not in EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"unknown event type {unknown[0]!r}; use {', '.join(EVENT_TYPES)} or '*'"
            )
        return list(dict.fromkeys(value))  # drop repeats, keep the order given


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expire_previous_in_s: int = Field(
        int(ROTATION_OVERLAP.total_seconds()),
        ge=0,
        le=MAX_ROTATION_OVERLAP_S,
        description="How long the old secret keeps signing; 0 if it leaked.",
    )


async def check_url(url: str, mode: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not 0-65535
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
        raise invalid("invalid_url", "url must be an absolute http(s) URL", "url")
    if mode == "live":
        if parts.scheme != "https":
            raise invalid("https_required", "a live webhook endpoint must use https", "url")
        # Live webhooks leave the building: refuse the gateway's own and private networks.
        # A name that does not resolve yet is accepted; every delivery checks it again.
        try:
            await public_addresses(parts.hostname, port or 443)
        except InternalHost:
            raise invalid(
                "internal_url", "a live webhook endpoint cannot be a local or private host", "url"
            ) from None
        except OSError:
            pass
    return url


class InternalHost(Exception):
    """A live endpoint's host is, or resolves to, an address that is not global."""


async def public_addresses(host: str, port: int) -> list[str]:
    """The addresses of a live endpoint's host; ``InternalHost`` unless all are global.

    Raises ``OSError`` when the host does not resolve.
    """
    if host == "localhost" or host.endswith(".localhost") or _is_odd_ipv4(host):
        raise InternalHost(host)
    # In a thread, like loop.getaddrinfo, but socket.getaddrinfo under uvloop too (tests fake it).
    infos = await asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    addresses = [str(info[4][0]) for info in infos]
    if not addresses or not all(_is_global(a) for a in addresses):
        raise InternalHost(host)
    return addresses


def _is_odd_ipv4(host: str) -> bool:
    """The resolver reads 127.1, 2130706433, 0x7f000001 and 0177.0.0.1 as IPv4 addresses:
    any such spelling but the canonical dotted quad is refused."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    try:
        return str(ipaddress.IPv4Address(host)) != host
    except ValueError:
        return True


def _is_global(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global


# ----- secrets ----------------------------------------------------------------------------------
def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _seal(vault: Vault, endpoint_id: str, current: str, previous: list[dict[str, str]]) -> str:
    return vault.seal({"current": current, "previous": previous}, bound_to=endpoint_id)


def signing_secrets(vault: Vault, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The current secret first, then every previous one that has not expired yet."""
    sealed = vault.open(endpoint.secrets_sealed, bound_to=endpoint.id)
    found = [str(sealed["current"])]
    for old in sealed.get("previous", []):
        if datetime.fromisoformat(old["expires_at"]) > now:
            found.append(str(old["secret"]))
    return found


# ----- views ------------------------------------------------------------------------------------
def endpoint_view(endpoint: WebhookEndpoint, secret: str | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": endpoint.id,
        "object": "webhook_endpoint",
        "url": endpoint.url,
        "event_types": endpoint.event_types,
        "description": endpoint.description,
        "status": endpoint.status,
        "livemode": endpoint.mode == "live",
        "created_at": isoformat(endpoint.created_at),
        "updated_at": isoformat(endpoint.updated_at),
    }
    if secret is not None:
        view["secret"] = secret  # only in the answer that made it
    return view


# ----- use cases (inside the caller's transaction) -----------------------------------------------
async def create_endpoint(
    session: AsyncSession, vault: Vault, caller: Caller, data: EndpointIn
) -> tuple[WebhookEndpoint, str]:
    url = await check_url(data.url, caller.mode)
    now = utcnow()
    endpoint_id = new_id("we")
    secret = new_secret()
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        merchant_id=caller.merchant_id,
        mode=caller.mode,
        url=url,
        event_types=data.event_types,
        secrets_sealed=_seal(vault, endpoint_id, secret, []),
        status="enabled",
        description=data.description,
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    await session.flush()
    detail = {"mode": caller.mode, "host": urlsplit(url).hostname, "event_types": data.event_types}
    await audit.record(
        session,
        caller.key_id,
        "webhook_endpoint.created",
        endpoint.id,
        caller.merchant_id,
        detail=detail,
    )
    return endpoint, secret


async def get_endpoint(session: AsyncSession, caller: Caller, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id, populate_existing=True)
    # Another merchant's endpoint, or the other mode's, is indistinguishable from none.
    if (
        endpoint is None
        or endpoint.merchant_id != caller.merchant_id
        or endpoint.mode != caller.mode
    ):
        raise not_found("webhook endpoint", endpoint_id)
    return endpoint


async def list_endpoints(session: AsyncSession, caller: Caller) -> list[WebhookEndpoint]:
    rows = await session.scalars(
        select(WebhookEndpoint)
        .where(
            WebhookEndpoint.merchant_id == caller.merchant_id, WebhookEndpoint.mode == caller.mode
        )
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return list(rows)


async def disable_endpoint(
    session: AsyncSession, caller: Caller, endpoint_id: str
) -> WebhookEndpoint:
    endpoint = await get_endpoint(session, caller, endpoint_id)
    if endpoint.status != "disabled":
        now = utcnow()
        endpoint.status = "disabled"
        endpoint.updated_at = now
        # Nothing owed to it any more; the attempt log keeps the history.
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == "pending")
            .values(status="failed", next_attempt_at=None, last_error="endpoint disabled")
        )
        await session.flush()
        await audit.record(
            session, caller.key_id, "webhook_endpoint.disabled", endpoint.id, caller.merchant_id
        )
    return endpoint


async def rotate_secret(
    session: AsyncSession, vault: Vault, caller: Caller, endpoint_id: str, data: RotateIn
) -> tuple[WebhookEndpoint, str, datetime | None]:
    """A new current secret; the old one keeps signing for ``expire_previous_in_s``."""
    endpoint = await get_endpoint(session, caller, endpoint_id)
    if endpoint.status != "enabled":
        raise invalid("endpoint_disabled", "this webhook endpoint is disabled", "endpoint_id")
    now = utcnow()
    sealed = vault.open(endpoint.secrets_sealed, bound_to=endpoint.id)
    previous = [
        p for p in sealed.get("previous", []) if datetime.fromisoformat(p["expires_at"]) > now
    ]
    expires_at = None
    if data.expire_previous_in_s > 0:
        expires_at = now + timedelta(seconds=data.expire_previous_in_s)
        previous.append({"secret": sealed["current"], "expires_at": expires_at.isoformat()})
    secret = new_secret()
    endpoint.secrets_sealed = _seal(vault, endpoint.id, secret, previous)
    endpoint.updated_at = now
    await session.flush()
    detail = {"previous_expires_at": isoformat(expires_at) if expires_at else "now"}
    await audit.record(
        session,
        caller.key_id,
        "webhook_endpoint.secret_rotated",
        endpoint.id,
        caller.merchant_id,
        detail=detail,
    )
    return endpoint, secret, expires_at


# ----- idempotent POSTs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False


Action = Callable[[AsyncSession], Awaitable[dict[str, Any]]]


class Idempotent:
    """Replays a POST that does all its work in one transaction.

    The key is claimed in the same transaction as the work, so there is no in-progress state:
    a concurrent twin fails on the primary key and replays the winner's answer. The answer's
    ``secret`` is stored sealed, never in clear.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], vault: Vault) -> None:
        self._sessions = sessions
        self._vault = vault

    async def run(
        self,
        caller: Caller,
        key: str | None,
        method_path: str,
        request: dict[str, Any],
        action: Action,
        status: int = 200,
    ) -> Answer:
        if not key:
            async with self._sessions() as session, session.begin():
                return Answer(status, await action(session))
        digest = _digest({"mode": caller.mode, "request": request})
        found = await self._replay(caller, key, method_path, digest)
        if found is not None:
            return found
        try:
            async with self._sessions() as session, session.begin():
                body = await action(session)
                session.add(
                    IdempotencyKey(
                        merchant_id=caller.merchant_id,
                        key=key,
                        method_path=method_path,
                        request_hash=digest,
                        state="done",
                        response_status=status,
                        response_body=self._stored(caller, key, body),
                        created_at=utcnow(),
                    )
                )
                await session.flush()
        except IntegrityError:
            found = await self._replay(caller, key, method_path, digest)
            if found is None:
                raise
            return found
        return Answer(status, body)

    def _stored(self, caller: Caller, key: str, body: dict[str, Any]) -> dict[str, Any]:
        stored = dict(body)
        if "secret" in stored:
            bound = f"idempotency:{caller.merchant_id}:{key}"
            stored["secret"] = self._vault.seal({"secret": stored["secret"]}, bound_to=bound)
        return stored

    async def _replay(
        self, caller: Caller, key: str, method_path: str, digest: str
    ) -> Answer | None:
        async with self._sessions() as session:
            row = await session.get(IdempotencyKey, (caller.merchant_id, key))
        if row is None:
            return None
        if row.method_path != method_path or row.request_hash != digest:
            raise ApiError(
                409,
                "idempotency_error",
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request",
                "Idempotency-Key",
            )
        body = dict(row.response_body or {})
        if "secret" in body:
            bound = f"idempotency:{caller.merchant_id}:{key}"
            body["secret"] = self._vault.open(body["secret"], bound_to=bound)["secret"]
        return Answer(row.response_status or 200, body, replayed=True)


def _digest(value: dict[str, Any]) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
