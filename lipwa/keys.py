"""What can be said about the keys of ``LIPWA_ENCRYPTION_KEYS`` without using them.

- Versions made by ``lipwa keys generate`` carry their creation date: ``v20260131`` (a second key
  the same day: ``v20260131b``). The doctor reads a key's age from it; a key whose version has
  no date (``v1``) has an unknown age.
- A fingerprint (first 12 hex digits of SHA-256 of the key) names a key without revealing it:
  compare staging's and production's fingerprints to prove they differ.
- Known example keys (from documentation) and keys with almost no randomness are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from lipwa.vault import KEY_BYTES

_DATED = re.compile(r"^v(\d{4})(\d{2})(\d{2})[a-z]?$")

# Base64 keys that appear in documentation and examples (ours and others'): never real keys.
KNOWN_EXAMPLE_KEYS = frozenset(
    {
        base64.b64encode(bytes(32)).decode(),  # 32 zero bytes
        base64.b64encode(b"0" * 32).decode(),
        base64.b64encode(b"a" * 32).decode(),
        base64.b64encode(b"x" * 32).decode(),
        base64.b64encode(b"0123456789abcdef0123456789abcdef").decode(),
        base64.b64encode(b"12345678901234567890123456789012").decode(),
        base64.b64encode(b"changeme" * 4).decode(),
        base64.b64encode(b"your-32-byte-encryption-key-here").decode(),
        # the README shows this one as an example of the format.
        "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    }
)
# 32 random bytes have ~30 distinct values; fewer than 16 is not random (odds below 1e-12).
MIN_DISTINCT_BYTES = 16


@dataclass(frozen=True)
class KeyInfo:
    """One entry of a key ring, read leniently: ``problem`` says why it is unusable."""

    version: str
    length: int
    fingerprint: str
    created: date | None
    problem: str | None = None
    weakness: str | None = None


def dated_version(today: date | None = None, suffix: str = "") -> str:
    today = today or datetime.now(UTC).date()
    return f"v{today:%Y%m%d}{suffix}"


def version_date(version: str) -> date | None:
    match = _DATED.match(version)
    if not match:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:12]


def weakness(encoded: str, key: bytes) -> str | None:
    if encoded in KNOWN_EXAMPLE_KEYS:
        return "a published example key"
    if len(set(key)) < MIN_DISTINCT_BYTES:
        return f"not random ({len(set(key))} distinct byte values)"
    return None


def inspect_ring(text: str) -> list[KeyInfo]:
    """Every entry of the ring, the first (active) first, with what is wrong with it."""
    found: list[KeyInfo] = []
    items = [part.strip() for part in text.split(",")]
    for position, item in enumerate((i for i in items if i), start=1):
        version, sep, encoded = item.partition(":")
        if not sep or not version or not version.isalnum():
            # Named by its place, never by its text: without a "version:" the text is the key.
            found.append(KeyInfo(f"entry{position}", 0, "-", None, "not 'version:base64'"))
            continue
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            found.append(KeyInfo(version, 0, "-", None, "not valid base64"))
            continue
        problem = None if len(key) == KEY_BYTES else f"{len(key)} bytes, not {KEY_BYTES}"
        found.append(
            KeyInfo(
                version=version,
                length=len(key),
                fingerprint=fingerprint(key),
                created=version_date(version),
                problem=problem,
                weakness=weakness(encoded, key),
            )
        )
    return found
