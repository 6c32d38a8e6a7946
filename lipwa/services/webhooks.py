"""Delivering events to webhook endpoints: claim due deliveries, sign, send, record, retry.

``add_event`` writes one ``WebhookDelivery`` per subscribed endpoint with the event (the
outbox). Here a worker claims the due ones, pushing ``next_attempt_at`` forward as a lease in
the claim transaction: if the worker dies, the lease runs out and another worker takes the
delivery again. Delivery is therefore at-least-once; receivers drop duplicates by event id.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa import metrics
from lipwa.clock import isoformat, utcnow
from lipwa.domain.ids import new_id
from lipwa.errors import invalid, not_found
from lipwa.services.events import event_view
from lipwa.services.webhook_endpoints import InternalHost, public_addresses, signing_secrets
from lipwa.store.tables import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from lipwa.vault import Vault, VaultError
from lipwa.webhooks import SIGNATURE_HEADER, sign

log = structlog.get_logger("lipwa.webhooks")

USER_AGENT = "Lipwa-Webhooks/0.1"
ERROR_MAX = 300
EXCERPT_BYTES = 200  # of a failed answer's body, kept as its error


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_s: float = 10.0
    concurrency: int = 20
    batch_size: int = 100
    retry_base_s: float = 10.0
    retry_cap_s: float = 6 * 3600.0
    give_up_after_s: float = 3 * 24 * 3600.0
    lease_margin_s: float = 30.0

    @property
    def lease(self) -> timedelta:
        # Long enough for a whole batch to go out in waves of ``concurrency``, all timing out;
        # after it a crashed worker's claim is due again and another worker takes it.
        waves = math.ceil(self.batch_size / max(1, self.concurrency))
        return timedelta(seconds=self.timeout_s * waves + self.lease_margin_s)

    def retry_delay(self, failures: int, rng: random.Random) -> float:
        """Exponential back-off with full jitter: uniform(0, min(cap, base * 2^(n-1)))."""
        ceiling = min(self.retry_cap_s, self.retry_base_s * 2 ** min(failures - 1, 40))
        return rng.uniform(0, ceiling)


@dataclass(frozen=True)
class Claim:
    delivery_id: str
    lease_until: datetime  # also the fencing token for writing the result
    attempts: int
    event: Event
    endpoint: WebhookEndpoint


@dataclass(frozen=True)
class Result:
    status_code: int | None
    error: str | None
    duration_ms: int
    # Nothing was sent for a reason only the operator can fix (the key ring): retried for as
    # long as it takes, never given up at the deadline.
    held: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def render_body(event: Event) -> bytes:
    # Compact ASCII JSON: the bytes signed are the bytes sent, with no charset surprises.
    return json.dumps(event_view(event), separators=(",", ":")).encode()


class WebhookSender:
    """Claims due deliveries and sends them, ``policy.concurrency`` at a time."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        vault: Vault,
        policy: DeliveryPolicy | None = None,
        *,
        verify_tls: bool = True,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._sessions = sessions
        self._vault = vault
        self.policy = policy or DeliveryPolicy()
        self._rng = random.Random()  # jitter only; nothing secret depends on it
        self._own_http = http is None
        # Its own client: other timeouts than provider calls, and redirects are not followed
        # (a 3xx is a failed delivery, not an invitation to post the event elsewhere).
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(self.policy.timeout_s),
            verify=verify_tls,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=self.policy.concurrency),
            headers={"User-Agent": USER_AGENT},
        )

    async def close(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and work it; return how many were handled."""
        claims = await self.claim()
        if not claims:
            return 0
        gate = asyncio.Semaphore(self.policy.concurrency)

        async def work(claim: Claim) -> None:
            async with gate:
                try:
                    await self.deliver(claim)
                except Exception:  # one delivery's failure must not hold up the batch
                    log.exception("webhook_delivery_crashed", delivery_id=claim.delivery_id)

        await asyncio.gather(*(work(c) for c in claims))
        return len(claims)

    async def claim(self) -> list[Claim]:
        now = utcnow()
        lease_until = now + self.policy.lease
        async with self._sessions() as session, session.begin():
            due = (
                select(WebhookDelivery.id, WebhookDelivery.attempts)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(self.policy.batch_size)
            )
            if session.get_bind().dialect.name == "postgresql":
                # Concurrent workers skip each other's rows instead of waiting on them. SQLite
                # needs no clause: BEGIN IMMEDIATE already makes claims one at a time.
                due = due.with_for_update(skip_locked=True)
            rows = list((await session.execute(due)).all())
            if not rows:
                return []
            ids = [r.id for r in rows]
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids))
                .values(next_attempt_at=lease_until)
                .execution_options(synchronize_session=False)
            )
            loaded = await session.execute(
                select(WebhookDelivery.id, Event, WebhookEndpoint)
                .join(Event, Event.id == WebhookDelivery.event_id)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(WebhookDelivery.id.in_(ids))
            )
            attempts = {r.id: r.attempts for r in rows}
            return [
                Claim(delivery_id, lease_until, attempts[delivery_id], event, endpoint)
                for delivery_id, event, endpoint in loaded.all()
            ]

    async def deliver(self, claim: Claim) -> None:
        if utcnow() >= claim.lease_until:
            return  # waited past its lease: another worker may have taken it meanwhile
        async with self._sessions() as session:  # now, not at claim: it may be disabled since
            endpoint_status = await session.scalar(
                select(WebhookEndpoint.status).where(WebhookEndpoint.id == claim.endpoint.id)
            )
        if endpoint_status != "enabled":
            await self._finish(
                claim, None, status="failed", next_attempt_at=None, last_error="endpoint disabled"
            )
            return
        result = await self._send(claim)
        await self._record(claim, result)

    async def _send(self, claim: Claim) -> Result:
        started = time.perf_counter()
        try:
            secrets = signing_secrets(self._vault, claim.endpoint, utcnow())
        except VaultError:
            # Never send unsigned: keep it pending; the operator must fix the key ring.
            return Result(None, "cannot open the endpoint's signing secret", 0, held=True)
        body = render_body(claim.event)
        headers = {
            SIGNATURE_HEADER: sign(body, secrets, int(time.time())),
            "Lipwa-Event-Id": claim.event.id,
            "Lipwa-Event-Type": claim.event.type,
            "Content-Type": "application/json",
        }
        try:
            # One deadline for the whole attempt: httpx's timeout is per read, so an endpoint
            # trickling a byte at a time would otherwise hold the worker for ever.
            async with asyncio.timeout(self.policy.timeout_s):
                status_code, excerpt = await self._post(claim, body, headers)
        except InternalHost:
            error = "refused: the endpoint's host now resolves to a local or private address"
            return Result(None, error, _elapsed_ms(started))
        except (TimeoutError, httpx.TimeoutException):
            error = f"timed out after {self.policy.timeout_s:g} s"
            return Result(None, error, _elapsed_ms(started))
        except Exception as exc:  # bad URL, OSError, ExceptionGroup: a failed attempt all the same
            return Result(None, _storable(f"{type(exc).__name__}: {exc}"), _elapsed_ms(started))
        duration = _elapsed_ms(started)
        if 200 <= status_code < 300:
            return Result(status_code, None, duration)
        error = f"HTTP {status_code}" + (f": {excerpt}" if excerpt else "")
        return Result(status_code, _storable(error), duration)

    async def _post(self, claim: Claim, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """POST the event; the status and the start of the answer (never more of it)."""
        url, extensions = httpx.URL(claim.endpoint.url), {}
        if claim.endpoint.mode == "live":
            addresses = await public_addresses(url.host, url.port or 443)
            # Connect to the address just checked (TLS still verifies the name): a second
            # lookup could be answered with an internal one (DNS rebinding).
            headers["Host"] = url.netloc.decode("ascii")
            extensions["sni_hostname"] = url.host
            url = url.copy_with(host=addresses[0])
        request = self._http.build_request(
            "POST", url, content=body, headers=headers, extensions=extensions
        )
        response = await self._http.send(request, stream=True)
        try:
            if 200 <= response.status_code < 300:
                return response.status_code, ""
            head = b""
            async for chunk in response.aiter_raw():
                head += chunk
                if len(head) >= EXCERPT_BYTES:
                    break
            text = head[:EXCERPT_BYTES].decode(response.encoding or "utf-8", errors="replace")
            return response.status_code, text.strip()
        finally:
            await response.aclose()

    async def _record(self, claim: Claim, result: Result) -> None:
        now = utcnow()
        fields: dict[str, Any] = {"last_status_code": result.status_code}
        if result.ok:
            fields.update(status="delivered", next_attempt_at=None, delivered_at=now)
            fields["last_error"] = None
        else:
            fields["last_error"] = result.error
            deadline = claim.event.created_at + timedelta(seconds=self.policy.give_up_after_s)
            delay = timedelta(seconds=self.policy.retry_delay(claim.attempts + 1, self._rng))
            if result.held:
                fields["next_attempt_at"] = now + delay
            elif now >= deadline:
                fields.update(status="failed", next_attempt_at=None)
            else:
                fields["next_attempt_at"] = min(now + delay, deadline)
        await self._finish(claim, result, **fields)
        gave_up = fields.get("status") == "failed"
        metrics.webhook_delivery("delivered" if result.ok else "gave_up" if gave_up else "retrying")
        # The endpoint id, never its URL: merchants sometimes put tokens in their URLs.
        emit = log.info if result.ok else log.warning
        emit(
            "webhook_delivered" if result.ok else "webhook_attempt_failed",
            delivery_id=claim.delivery_id,
            event_id=claim.event.id,
            endpoint_id=claim.endpoint.id,
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            attempt=claim.attempts + 1,
            next_status=fields.get("status", "pending"),
        )

    async def _finish(self, claim: Claim, result: Result | None, **fields: Any) -> None:
        async with self._sessions() as session, session.begin():
            if result is not None:
                session.add(
                    WebhookAttempt(
                        delivery_id=claim.delivery_id,
                        attempted_at=utcnow(),
                        status_code=result.status_code,
                        error=result.error,
                        duration_ms=result.duration_ms,
                    )
                )
                fields["attempts"] = WebhookDelivery.attempts + 1
            # Fenced by our lease: if the lease ran out and another worker (or a redeliver)
            # took the row since, its state wins; our attempt is still in the log.
            await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == claim.delivery_id,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at == claim.lease_until,
                )
                .values(**fields)
                .execution_options(synchronize_session=False)
            )


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _storable(text: str) -> str:
    """An endpoint's words as the attempt log can keep them: printable (PostgreSQL refuses
    NUL; a binary error page is noise) and short."""
    return "".join(c if c.isprintable() else " " for c in text)[:ERROR_MAX]


# ----- redelivery and the attempt log (API and CLI) -----------------------------------------------
@dataclass
class DeliveryRecord:
    delivery: WebhookDelivery
    endpoint: WebhookEndpoint
    attempts: list[WebhookAttempt] = field(default_factory=list)


async def redeliver(
    session: AsyncSession, event: Event, endpoint_id: str | None = None
) -> list[WebhookDelivery]:
    """Queue the event again, now: reset its deliveries, or create them where none exist.

    Without ``endpoint_id``: every enabled endpoint of the event's merchant and mode that
    subscribes to its type. With it: that endpoint, subscribed or not.
    """
    scope = select(WebhookEndpoint).where(
        WebhookEndpoint.merchant_id == event.merchant_id, WebhookEndpoint.mode == event.mode
    )
    if endpoint_id is not None:
        endpoint = await session.scalar(scope.where(WebhookEndpoint.id == endpoint_id))
        if endpoint is None:
            raise not_found("webhook endpoint", endpoint_id)
        if endpoint.status != "enabled":
            raise invalid("endpoint_disabled", "this webhook endpoint is disabled", "endpoint_id")
        targets = [endpoint]
    else:
        enabled = await session.scalars(scope.where(WebhookEndpoint.status == "enabled"))
        targets = [e for e in enabled if "*" in e.event_types or event.type in e.event_types]
        if not targets:
            raise invalid(
                "no_webhook_endpoint",
                "No enabled webhook endpoint receives this event type; pass endpoint_id",
                "endpoint_id",
            )
    now = utcnow()
    existing = {
        d.endpoint_id: d
        for d in await session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.event_id == event.id)
        )
    }
    queued = []
    for endpoint in targets:
        delivery = existing.get(endpoint.id)
        if delivery is None:
            delivery = WebhookDelivery(
                id=new_id("whd"),
                merchant_id=event.merchant_id,
                event_id=event.id,
                endpoint_id=endpoint.id,
                attempts=0,
                created_at=now,
            )
            session.add(delivery)
        delivery.status = "pending"
        delivery.next_attempt_at = now
        delivery.delivered_at = None
        queued.append(delivery)
    await session.flush()
    return queued


async def deliveries_for(session: AsyncSession, event: Event) -> list[DeliveryRecord]:
    rows = await session.execute(
        select(WebhookDelivery, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.event_id == event.id)
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    )
    records = {d.id: DeliveryRecord(d, e) for d, e in rows.all()}
    if records:
        attempts = await session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(records)))
            .order_by(WebhookAttempt.attempted_at, WebhookAttempt.id)
        )
        for attempt in attempts:
            records[attempt.delivery_id].attempts.append(attempt)
    return list(records.values())


def delivery_view(
    delivery: WebhookDelivery, attempts: Sequence[WebhookAttempt] | None = None
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": delivery.id,
        "object": "webhook_delivery",
        "event_id": delivery.event_id,
        "endpoint_id": delivery.endpoint_id,
        "status": delivery.status,
        "attempt_count": delivery.attempts,
        "next_attempt_at": isoformat(delivery.next_attempt_at),
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": isoformat(delivery.created_at),
        "delivered_at": isoformat(delivery.delivered_at),
    }
    if attempts is not None:
        view["attempts"] = [
            {
                "attempted_at": isoformat(a.attempted_at),
                "status_code": a.status_code,
                "error": a.error,
                "duration_ms": a.duration_ms,
            }
            for a in attempts
        ]
    return view
