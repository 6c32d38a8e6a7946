"""Sign and verify Lipwa webhooks.

Every webhook Lipwa sends is a ``POST`` whose body is one event as JSON (the same object
``GET /v1/events/{id}`` returns), with these headers::

    Lipwa-Signature: t=1732245600,v1=5f1c…e9a0
    Lipwa-Event-Id: evt_…
    Lipwa-Event-Type: payment.succeeded
    Content-Type: application/json
    User-Agent: Lipwa-Webhooks/0.1

Verifying in Python (this module has no dependencies beyond the standard library, so you may
also copy it into your project)::

    from lipwa.webhooks import WebhookVerificationError, verify

    @app.post("/lipwa/webhooks")
    async def receive(request):
        payload = await request.body()          # the raw bytes, before any JSON parsing
        try:
            event = verify(payload, request.headers["Lipwa-Signature"], WHSEC)
        except (KeyError, WebhookVerificationError):
            return Response(status_code=400)
        if already_processed(event["id"]):     # deliveries are at-least-once
            return Response(status_code=200)
        handle(event)
        return Response(status_code=200)

The algorithm, for any other language:

1. Split the ``Lipwa-Signature`` header on ``,``; each part is ``key=value``. Take the one
   ``t`` (a Unix timestamp in seconds) and every ``v1`` (there are two while a secret is being
   rotated). Ignore other keys: they are for future schemes.
2. Compute ``HMAC-SHA256(key = the whole secret string "whsec_…" as UTF-8 bytes,
   message = t + "." + raw body bytes)`` and hex-encode it (lowercase).
3. Accept when it equals any ``v1`` value, compared in constant time.
4. Reject when ``|now - t|`` is more than your tolerance (5 minutes here) — this stops a
   captured request from being replayed later.
5. Only then parse the body as JSON. Use ``event["id"]`` to drop duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Sequence
from typing import Any

SIGNATURE_HEADER = "Lipwa-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300
# ASCII digits only (str.isdigit also takes '²'), and short enough for int().
TIMESTAMP = re.compile(r"[0-9]{1,18}")


class WebhookVerificationError(ValueError):
    """The webhook is not proven to come from Lipwa; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _as_bytes(payload: bytes | str) -> bytes:
    return payload.encode("utf-8") if isinstance(payload, str) else payload


def compute_signature(payload: bytes | str, secret: str, timestamp: int) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.{payload}"`` under ``secret``."""
    message = f"{timestamp}.".encode() + _as_bytes(payload)
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(payload: bytes | str, secret: str | Sequence[str], timestamp: int) -> str:
    """The ``Lipwa-Signature`` header value: ``t=…`` and one ``v1=…`` per secret given."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    parts = [f"t={int(timestamp)}"]
    parts += [f"{SCHEME}={compute_signature(payload, s, int(timestamp))}" for s in secrets]
    return ",".join(parts)


def parse_header(header: str | None) -> tuple[int, list[str]]:
    """``(timestamp, [v1 signatures])`` from a header value, or a verification error."""
    if not header or not header.strip():
        raise WebhookVerificationError(f"missing {SIGNATURE_HEADER} header")
    timestamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookVerificationError(f"malformed {SIGNATURE_HEADER} header: {part!r}")
        if key == "t":
            timestamps.append(value)
        elif key == SCHEME:
            signatures.append(value)
    if len(timestamps) != 1 or not TIMESTAMP.fullmatch(timestamps[0]):
        raise WebhookVerificationError(
            f"malformed {SIGNATURE_HEADER} header: it needs exactly one t=<unix seconds>"
        )
    if not signatures:
        raise WebhookVerificationError(f"no {SCHEME} signature in the {SIGNATURE_HEADER} header")
    return int(timestamps[0]), signatures


def verify_signature(
    payload: bytes | str,
    header: str | None,
    secret: str,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check the signature and the timestamp; return the signed timestamp."""
    timestamp, signatures = parse_header(header)
    expected = compute_signature(payload, secret, timestamp).encode()
    # Check every candidate (no early exit) so timing says nothing about which one matched.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
    if not matched:
        raise WebhookVerificationError(
            "no signature matches: wrong secret, or the body changed after signing"
        )
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookVerificationError(
            f"timestamp is {int(current - timestamp)} s away from now; "
            f"tolerance is {tolerance_s} s (replayed or clock skew)"
        )
    return timestamp


def verify(
    payload: bytes | str,
    header: str | None,
    secret: str,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify a webhook and return its event; raise ``WebhookVerificationError`` otherwise.

    ``payload`` must be the raw request body: re-serialised JSON will not match.
    """
    verify_signature(payload, header, secret, tolerance_s=tolerance_s, now=now)
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise WebhookVerificationError("the signed body is not valid JSON") from exc
    if not isinstance(event, dict):
        raise WebhookVerificationError("the signed body is not a JSON object")
    return event
