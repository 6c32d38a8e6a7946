"""Fees on a successful collection, in exact decimals: the provider's and the platform's.

``compute_fees(amount, currency, provider_tariff, platform_fee)`` splits a gross amount into
``provider_fee + platform_fee + net == gross`` (exactly, by construction), each fee rounded
half-up to the currency's minor unit and capped so that ``net`` is never negative (the
provider fee first, then the platform fee takes at most what is left).

Provider fees are ESTIMATES. Neither Safaricom nor MTN sends the fee of a collection in the
STK callback or the request-to-pay status, so Lipwa estimates it when the payment succeeds:

- M-Pesa paybill: the business-side charge of the paybill tariff in which the business pays
  the whole charge, in bands of KES. Source: third-party Kenyan tables published 2024-2025
  (not Safaricom's own document, and they disagree on band names); the merchant's real charge
  depends on the tariff it chose with Safaricom (Mgao, Business Bouquet, Customer Bouquet).
- M-Pesa till (Buy Goods): 0.55 % capped at KES 200, the commonly reported merchant rate.
- MTN MoMo: 1 % of the amount, a round guess across markets; MTN's merchant rates are per
  contract and per country.

Override both with the merchant's contract terms in its settings (``merchant.settings``)::

    "platform_fees": {"mpesa": {"percent": "2.0", "fixed": "0"}, "momo": {"percent": "1.5"}}
    "provider_fees": {"mpesa": {"percent": "0.55", "fixed": "0", "cap": "200"},
                      "momo": {"bands": [["0", "1000", "5"], ["1000", null, "10"]]}}

Percent and fixed are decimal strings (JSON numbers are refused: no float rounding). A
provider override replaces the default tariff of that provider (both paybill and till).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from lipwa.domain.errors import DomainError
from lipwa.domain.money import CURRENCY_EXPONENT

ZERO = Decimal(0)
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Band:
    """A flat fee for amounts in ``(above, up_to]`` (``up_to`` None: no upper bound)."""

    above: Decimal
    up_to: Decimal | None
    fee: Decimal


@dataclass(frozen=True)
class Tariff:
    """``percent`` of the amount plus ``fixed``, at most ``cap``; or a flat fee by band."""

    percent: Decimal = ZERO
    fixed: Decimal = ZERO
    cap: Decimal | None = None
    bands: tuple[Band, ...] = ()
    estimate: bool = True

    def fee(self, amount: Decimal) -> Decimal:
        if self.bands:
            for band in self.bands:
                if amount > band.above and (band.up_to is None or amount <= band.up_to):
                    return band.fee
            return ZERO
        fee = amount * self.percent / HUNDRED + self.fixed
        return min(fee, self.cap) if self.cap is not None else fee


NO_FEE = Tariff(estimate=False)


def _bands(rows: list[tuple[int, int | None, int]]) -> tuple[Band, ...]:
    return tuple(
        Band(Decimal(a), Decimal(b) if b is not None else None, Decimal(f)) for a, b, f in rows
    )


# ESTIMATES: see the module docstring for where they come from and how to override them.
MPESA_PAYBILL = Tariff(
    bands=_bands(
        [
            (0, 100, 0),
            (100, 500, 5),
            (500, 1_000, 10),
            (1_000, 1_500, 15),
            (1_500, 2_500, 20),
            (2_500, 3_500, 25),
            (3_500, 5_000, 34),
            (5_000, 7_500, 42),
            (7_500, 10_000, 48),
            (10_000, 15_000, 57),
            (15_000, 20_000, 62),
            (20_000, 25_000, 67),
            (25_000, 30_000, 72),
            (30_000, 35_000, 83),
            (35_000, 40_000, 99),
            (40_000, 45_000, 103),
            (45_000, None, 108),
        ]
    )
)
MPESA_TILL = Tariff(percent=Decimal("0.55"), cap=Decimal(200))
MOMO = Tariff(percent=Decimal("1.0"))


def default_tariff(provider: str, kind: str | None) -> Tariff:
    """The estimated provider tariff for a collection (``kind``: paybill | till for M-Pesa)."""
    if provider == "mpesa":
        return MPESA_TILL if kind == "till" else MPESA_PAYBILL
    if provider == "momo":
        return MOMO
    return NO_FEE


# ----- parsing merchant settings -----------------------------------------------------------------
# Digits before the point a fee setting may have: any real fee fits, and every result still
# rounds to cents within Decimal's default precision (28 digits).
MAX_FEE_DIGITS = 15


def _decimal(value: object, param: str, *, allow_none: bool = False) -> Decimal | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DomainError(
            "invalid_fee_settings", f'{param} must be a decimal string such as "2.5".', param
        )
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise DomainError(
            "invalid_fee_settings", f'{param} must be a decimal string such as "2.5".', param
        ) from None
    if not number.is_finite() or number < 0:
        raise DomainError("invalid_fee_settings", f"{param} must be zero or more.", param)
    if number.adjusted() >= MAX_FEE_DIGITS:  # too large to round to a currency's cents
        raise DomainError(
            "invalid_fee_settings", f"{param} must be under 10^{MAX_FEE_DIGITS}.", param
        )
    return number


def _required(value: object, param: str) -> Decimal:
    number = _decimal(value, param)
    assert number is not None
    return number


def parse_tariff(raw: object, param: str, *, estimate: bool) -> Tariff:
    """A tariff from settings: ``{"percent", "fixed", "cap"}`` or ``{"bands": [[above,
    up_to|null, fee], …]}``; raises DomainError naming the bad key."""
    if not isinstance(raw, Mapping):
        raise DomainError("invalid_fee_settings", f"{param} must be an object.", param)
    allowed = {"percent", "fixed", "cap", "bands"}
    extra = set(raw) - allowed
    if extra:
        raise DomainError(
            "invalid_fee_settings",
            f"{param} takes only percent, fixed, cap and bands (not {', '.join(sorted(extra))}).",
            param,
        )
    if "bands" in raw:
        bands = raw["bands"]
        if not isinstance(bands, list) or not bands:
            raise DomainError(
                "invalid_fee_settings", f"{param}.bands must be a non-empty list.", param
            )
        parsed: list[Band] = []
        for i, band in enumerate(bands):
            where = f"{param}.bands[{i}]"
            if not isinstance(band, list) or len(band) != 3:
                raise DomainError(
                    "invalid_fee_settings", f"{where} must be [above, up_to or null, fee].", where
                )
            parsed.append(
                Band(
                    _required(band[0], where),
                    _decimal(band[1], where, allow_none=True),
                    _required(band[2], where),
                )
            )
        return Tariff(bands=tuple(parsed), estimate=estimate)
    percent = _required(raw.get("percent", "0"), f"{param}.percent")
    if percent > HUNDRED:
        raise DomainError(
            "invalid_fee_settings", f"{param}.percent must be 100 or less.", f"{param}.percent"
        )
    return Tariff(
        percent=percent,
        fixed=_required(raw.get("fixed", "0"), f"{param}.fixed"),
        cap=_decimal(raw.get("cap"), f"{param}.cap", allow_none=True),
        estimate=estimate,
    )


def platform_tariff(settings: Mapping[str, Any], provider: str) -> Tariff:
    """The merchant's platform fee for ``provider`` (none configured: no platform fee)."""
    fees = settings.get("platform_fees")
    if fees is None:
        return NO_FEE
    if not isinstance(fees, Mapping):
        raise DomainError(
            "invalid_fee_settings",
            "platform_fees must be an object keyed by provider.",
            "platform_fees",
        )
    raw = fees.get(provider)
    if raw is None:
        return NO_FEE
    return parse_tariff(raw, f"platform_fees.{provider}", estimate=False)


def provider_tariff(settings: Mapping[str, Any], provider: str, kind: str | None) -> Tariff:
    """The provider tariff: the merchant's contract terms if set, else the default estimate."""
    fees = settings.get("provider_fees")
    if isinstance(fees, Mapping) and fees.get(provider) is not None:
        return parse_tariff(fees[provider], f"provider_fees.{provider}", estimate=False)
    if fees is not None and not isinstance(fees, Mapping):
        raise DomainError(
            "invalid_fee_settings",
            "provider_fees must be an object keyed by provider.",
            "provider_fees",
        )
    return default_tariff(provider, kind)


def check_fee_settings(settings: Mapping[str, Any]) -> None:
    """Raise DomainError if the merchant's fee settings cannot be used (for input checks)."""
    for provider in ("mpesa", "momo"):
        platform_tariff(settings, provider)
        provider_tariff(settings, provider, None)


# ----- the split ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fees:
    gross: Decimal
    provider_fee: Decimal
    platform_fee: Decimal
    net: Decimal
    provider_fee_estimated: bool


def _round(value: Decimal, currency: str) -> Decimal:
    exponent = CURRENCY_EXPONENT.get(currency, 2)
    return value.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_UP)


def compute_fees(amount: Decimal, currency: str, provider: Tariff, platform: Tariff) -> Fees:
    """Split ``amount`` into provider fee, platform fee and net; the three add up exactly."""
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not an amount: {amount!r}")
    provider_fee = min(_round(provider.fee(amount), currency), amount)
    platform_fee = min(_round(platform.fee(amount), currency), amount - provider_fee)
    return Fees(
        gross=amount,
        provider_fee=provider_fee,
        platform_fee=platform_fee,
        net=amount - provider_fee - platform_fee,
        provider_fee_estimated=provider.estimate,
    )
