"""Kill-switch and rollout keys, and the stable rollout bucket of a merchant.

Keys: ``gateway`` (everything), ``provider:<mpesa|momo>``, ``merchant:<id>``, ``account:<id>``
(on/off), and ``rollout:<mpesa|momo>`` (a percentage of merchants). A merchant's bucket is
``sha256("<merchant_id>:<provider>") mod 100``: stable across processes and restarts, and
independent per provider, so 10% → 50% → 100% only ever adds merchants.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from lipwa.domain.errors import DomainError

FlagKind = Literal["gateway", "provider", "merchant", "account", "rollout"]
PROVIDERS = ("mpesa", "momo")
_KEY = re.compile(
    r"(gateway)|(provider|rollout):(mpesa|momo)|(merchant|account):([A-Za-z0-9_]{1,40})"
)


@dataclass(frozen=True)
class FlagKey:
    kind: FlagKind
    subject: str | None  # provider name, merchant id or account id; None for "gateway"

    def __str__(self) -> str:
        return self.kind if self.subject is None else f"{self.kind}:{self.subject}"


def parse_flag_key(key: str) -> FlagKey:
    """Check a flag key; raise ``DomainError("invalid_flag_key")`` if it is not one of ours."""
    match = _KEY.fullmatch(key)
    if match is None:
        raise DomainError(
            "invalid_flag_key",
            f"Unknown flag {key!r}: use gateway, provider:mpesa, provider:momo, merchant:<id>, "
            "account:<id>, rollout:mpesa or rollout:momo.",
            param="key",
        )
    if match.group(1):
        return FlagKey("gateway", None)
    if match.group(2):
        kind: FlagKind = "provider" if match.group(2) == "provider" else "rollout"
        return FlagKey(kind, match.group(3))
    other: FlagKind = "merchant" if match.group(4) == "merchant" else "account"
    return FlagKey(other, match.group(5))


def rollout_bucket(merchant_id: str, provider: str) -> int:
    """0..99, the same for a (merchant, provider) in every process."""
    digest = hashlib.sha256(f"{merchant_id}:{provider}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def in_rollout(merchant_id: str, provider: str, percentage: int) -> bool:
    """Whether ``merchant_id`` is inside a rollout of ``provider`` to ``percentage``% (0..100)."""
    return rollout_bucket(merchant_id, provider) < percentage
