"""Secrets at rest: AES-256-GCM under a versioned key ring.

``LIPWA_ENCRYPTION_KEYS`` holds ``version:base64key`` pairs separated by commas; the first one
encrypts, every one decrypts. A sealed value is ``lw1.<version>.<base64(nonce | ciphertext)>``;
the associated data binds it to the row it belongs to, so a ciphertext copied to another row
does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "lw1"
KEY_BYTES = 32


class VaultError(Exception):
    """A key ring that cannot be used, or a value that does not decrypt. Never holds secrets."""


@dataclass(frozen=True)
class KeyRing:
    active_version: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            version, sep, encoded = item.partition(":")
            if not sep or not version or not version.isalnum():
                raise VaultError("each key must look like 'v1:<base64 of 32 random bytes>'")
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise VaultError(f"key {version!r} is not valid base64") from exc
            if len(key) != KEY_BYTES:
                raise VaultError(f"key {version!r} must be 32 bytes (AES-256), not {len(key)}")
            if version in keys:
                raise VaultError(f"key version {version!r} appears twice")
            keys[version] = key
            order.append(version)
        if not keys:
            raise VaultError("the key ring is empty")
        return cls(active_version=order[0], keys=keys)


def generate_key_text(version: str = "v1") -> str:
    return f"{version}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


class Vault:
    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring

    @property
    def active_version(self) -> str:
        return self._ring.active_version

    @property
    def versions(self) -> list[str]:
        return list(self._ring.keys)

    def seal(self, secrets: dict[str, Any], bound_to: str) -> str:
        plaintext = json.dumps(secrets, separators=(",", ":"), sort_keys=True).encode()
        nonce = os.urandom(12)
        key = self._ring.keys[self._ring.active_version]
        sealed = AESGCM(key).encrypt(nonce, plaintext, bound_to.encode())
        blob = base64.b64encode(nonce + sealed).decode()
        return f"{PREFIX}.{self._ring.active_version}.{blob}"

    def version_of(self, sealed: str) -> str:
        parts = sealed.split(".", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            raise VaultError("not a sealed value")
        return parts[1]

    def open(self, sealed: str, bound_to: str) -> dict[str, Any]:
        version = self.version_of(sealed)
        key = self._ring.keys.get(version)
        if key is None:
            raise VaultError(f"failed to decrypt credentials: key version {version!r} not in ring")
        try:
            raw = base64.b64decode(sealed.split(".", 2)[2], validate=True)
            plaintext = AESGCM(key).decrypt(raw[:12], raw[12:], bound_to.encode())
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise VaultError("failed to decrypt credentials: wrong key or damaged value") from exc
        value = json.loads(plaintext)
        if not isinstance(value, dict):
            raise VaultError("sealed value is not an object")
        return value
