"""The merchant's webhook receiver for the chaos test (bare ASGI, its own process).

Serve with ``python -m uvicorn --factory tests.chaos.receiver:create_app``. Settings come from
the environment: ``CHAOS_WEBHOOK_SECRET`` (the endpoint's ``whsec_…``), ``CHAOS_FAIL_PCT``
(share of deliveries answered 500 on purpose, to exercise retries) and ``CHAOS_SEED``.

``POST /hook`` verifies ``Lipwa-Signature`` with :func:`lipwa.webhooks.verify` like a real
merchant: a bad signature is answered 400 and counted; a good one is recorded per event id
(type, payment id and status of the payment in the body) and answered 200 — or 500 when the
seeded dice say so, in which case the event is *not* counted as received. ``GET /state``
returns everything as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from lipwa.webhooks import SIGNATURE_HEADER, WebhookVerificationError, verify

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HEADER = SIGNATURE_HEADER.lower().encode()


class Receiver:
    def __init__(self, secret: str, fail_pct: float, seed: int) -> None:
        self.secret = secret
        self.fail_pct = fail_pct
        self.seed = seed
        # event id -> {"type", "payment_id", "status", "accepted", "refused"}
        self.events: dict[str, dict[str, Any]] = {}
        self.arrivals: dict[str, int] = {}
        self.bad_signatures: list[str] = []
        self.injected_failures = 0
        self.requests = 0

    def _fails(self, event_id: str, nth: int) -> bool:
        digest = hashlib.sha256(f"{self.seed}:hook:{event_id}:{nth}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 * 100 < self.fail_pct

    def handle(self, body: bytes, header: str | None) -> int:
        self.requests += 1
        try:
            event = verify(body, header, self.secret)
        except WebhookVerificationError as exc:
            self.bad_signatures.append(exc.reason[:200])
            return 400
        event_id = str(event.get("id"))
        nth = self.arrivals.get(event_id, 0) + 1
        self.arrivals[event_id] = nth
        obj = (event.get("data") or {}).get("object") or {}
        record = self.events.setdefault(
            event_id,
            {
                "type": event.get("type"),
                "payment_id": event.get("resource_id"),
                "status": obj.get("status"),
                "receipt": obj.get("receipt"),
                "accepted": 0,
                "refused": 0,
            },
        )
        if self._fails(event_id, nth):
            self.injected_failures += 1
            record["refused"] += 1
            return 500
        record["accepted"] += 1
        return 200

    def state(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "bad_signatures": self.bad_signatures,
            "injected_failures": self.injected_failures,
            "events": self.events,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                # The sender died mid-request (a SIGKILLed worker): no complete request was
                # made, so there is nothing to verify or count — as with any real receiver.
                return
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body", False))
        path: str = scope["path"]
        body = b""
        if path == "/hook" and scope["method"] == "POST":
            header = next(
                (v.decode("latin-1") for k, v in scope["headers"] if k.lower() == _HEADER), None
            )
            status = self.handle(b"".join(chunks), header)
        elif path == "/state":
            status, body = 200, json.dumps(self.state()).encode()
        elif path == "/live":
            status, body = 200, b'{"status":"ok"}'
        else:
            status = 404
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def create_app() -> Receiver:
    return Receiver(
        secret=os.environ["CHAOS_WEBHOOK_SECRET"],
        fail_pct=float(os.environ.get("CHAOS_FAIL_PCT", "0")),
        seed=int(os.environ.get("CHAOS_SEED", "0")),
    )
