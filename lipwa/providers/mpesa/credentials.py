"""One merchant's Daraja credentials. Secrets never appear in ``repr``/``str``."""

from __future__ import annotations

from dataclasses import dataclass, field

PAYBILL = "paybill"
TILL = "till"


@dataclass(frozen=True)
class MpesaCredentials:
    consumer_key: str = field(repr=False)
    consumer_secret: str = field(repr=False)
    shortcode: str  # BusinessShortCode: the paybill, or the HO/store number for a till
    kind: str  # "paybill" | "till"
    passkey: str = field(repr=False)
    till_number: str | None = None  # PartyB for a till (CustomerBuyGoodsOnline)
    initiator_name: str | None = None
    initiator_password: str | None = field(default=None, repr=False)
    certificate_pem: str | None = field(default=None, repr=False)  # for SecurityCredential
    b2c_shortcode: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in (PAYBILL, TILL):
            raise ValueError(f"kind must be {PAYBILL!r} or {TILL!r}, not {self.kind!r}")
        if self.kind == TILL and not self.till_number:
            raise ValueError("a till account needs till_number (PartyB)")

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing text that leaves the provider layer."""
        values = (self.consumer_key, self.consumer_secret, self.passkey, self.initiator_password)
        return tuple(v for v in values if v)
