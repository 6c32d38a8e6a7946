"""One merchant's MoMo API user. Secrets never appear in ``repr``/``str``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

COLLECTION = "collection"
DISBURSEMENT = "disbursement"


@dataclass(frozen=True)
class MomoCredentials:
    api_user: str
    api_key: str = field(repr=False)
    # Per product: {"collection": ..., "disbursement": ...}
    subscription_keys: Mapping[str, str] = field(repr=False)
    target_environment: str  # "sandbox" | "mtnrwanda" | "mtnuganda" | ...
    currency: str

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing text that leaves the provider layer."""
        return tuple(v for v in (self.api_key, *self.subscription_keys.values()) if v)
