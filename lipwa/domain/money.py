"""Amounts, currencies and per-provider amount limits.

Amounts travel through the public API as decimal strings in the currency's major unit
(``"100.50"`` KES, ``"1500"`` RWF), never as JSON numbers. Inside Lipwa they are ``Decimal``.

- ``parse_amount`` turns an API string into a ``Decimal`` (quantised to the currency's exponent).
- ``rule_for`` + ``check_amount`` enforce the provider's (or merchant's) min/max/whole-unit rule.
- ``format_amount`` renders an amount for the API: always with the currency's ISO exponent
  digits (``"100.00"`` KES, ``"100"`` RWF), so one amount has exactly one spelling.
- ``to_provider_units`` renders an amount for a provider: ``"100"`` when whole, else ``"100.50"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from lipwa.domain.errors import DomainError

# ISO 4217 minor units for M-Pesa (KES) and the MTN MoMo markets (providers/momo.md §8).
# KES keeps its ISO exponent 2 even though M-Pesa only takes whole shillings: that is a
# provider rule (AmountRule.whole_units), not a property of the currency.
CURRENCY_EXPONENT: dict[str, int] = {
    "KES": 2,  # Kenya (M-Pesa)
    "RWF": 0,  # Rwanda
    "UGX": 0,  # Uganda
    "EUR": 2,  # MoMo sandbox only
    "GHS": 2,  # Ghana
    "XAF": 0,  # Cameroon, Congo-Brazzaville
    "XOF": 0,  # Côte d'Ivoire, Benin
    "ZMW": 2,  # Zambia
    "SZL": 2,  # Eswatini
    "GNF": 0,  # Guinea-Conakry
    "ZAR": 2,  # South Africa
    "LRD": 2,  # Liberia
    "SSP": 2,  # South Sudan
    "NGN": 2,  # Nigeria
}

PROVIDER_NAMES: dict[str, str] = {"mpesa": "M-Pesa", "momo": "MTN MoMo"}


@dataclass(frozen=True)
class AmountRule:
    """Per-transaction limits for one (provider, currency); bounds are inclusive."""

    minimum: Decimal
    maximum: Decimal
    whole_units: bool  # the provider takes only whole units of the currency
    provider: str = ""  # for messages only ("M-Pesa takes whole KES only")


def _rule(provider: str, minimum: int, maximum: int, whole: bool) -> AmountRule:
    return AmountRule(Decimal(minimum), Decimal(maximum), whole, provider)


# Key: (provider, currency). Only KES (Daraja: 1..250,000 whole shillings, daraja.md §2.1) and
# RWF (100..1,000,000, go-live checklists) are documented limits. Every other MoMo row is an
# ESTIMATE (roughly USD 0.5 .. USD 1,000-3,000 per transaction) to be overridden per merchant
# with the limits in the merchant's MTN contract. Zero-exponent currencies are whole-only; for
# two-exponent currencies MoMo's decimal rule is unpublished, so two decimals are allowed
# (the sandbox takes string amounts like "1.50" in EUR).
DEFAULT_RULES: dict[tuple[str, str], AmountRule] = {
    ("mpesa", "KES"): _rule("mpesa", 1, 250_000, whole=True),
    ("momo", "RWF"): _rule("momo", 100, 1_000_000, whole=True),
    ("momo", "UGX"): _rule("momo", 500, 5_000_000, whole=True),  # estimate
    ("momo", "EUR"): _rule("momo", 1, 1_000_000, whole=False),  # sandbox
    ("momo", "GHS"): _rule("momo", 1, 20_000, whole=False),  # estimate
    ("momo", "XAF"): _rule("momo", 100, 1_000_000, whole=True),  # estimate
    ("momo", "XOF"): _rule("momo", 100, 1_000_000, whole=True),  # estimate
    ("momo", "ZMW"): _rule("momo", 1, 50_000, whole=False),  # estimate
    ("momo", "SZL"): _rule("momo", 1, 20_000, whole=False),  # estimate
    ("momo", "GNF"): _rule("momo", 1_000, 10_000_000, whole=True),  # estimate
    ("momo", "ZAR"): _rule("momo", 1, 20_000, whole=False),  # estimate
    ("momo", "LRD"): _rule("momo", 10, 200_000, whole=False),  # estimate
    ("momo", "SSP"): _rule("momo", 100, 5_000_000, whole=False),  # estimate
    ("momo", "NGN"): _rule("momo", 100, 2_000_000, whole=False),  # estimate
}

# Providers whose whole-unit rule is their own (daraja.md: decimals are refused), not an
# estimate a merchant may loosen: an amount with cents would be cut on the wire.
WHOLE_UNITS_ONLY = frozenset({"mpesa"})

_MAX_INTEGER_DIGITS = 20
_DECIMAL_STRING = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]+))?")


def _exponent(currency: object, param: str = "currency") -> int:
    exponent = CURRENCY_EXPONENT.get(currency) if isinstance(currency, str) else None
    if exponent is None:
        supported = ", ".join(CURRENCY_EXPONENT)
        raise DomainError(
            "unsupported_currency",
            f"Currency {currency!r} is not supported. Use an upper-case ISO 4217 code: "
            f"{supported}.",
            param=param,
        )
    return exponent


def normalise_currency(raw: object, param: str = "currency") -> str:
    """Upper-case and check a currency code from a request (``"kes"`` → ``"KES"``)."""
    code = raw.strip().upper() if isinstance(raw, str) else raw
    _exponent(code, param)  # raises for non-str too
    return str(code)


def parse_amount(text: object, currency: str, param: str = "amount") -> Decimal:
    """Parse an API amount: a plain decimal string in the currency's major unit.

    Accepts ``"100"``, ``"100.5"``, ``"100.50"``; rejects JSON numbers, signs, leading zeros,
    exponents, blanks and more decimals than the currency has. Returns the amount quantised
    to the currency's exponent (``Decimal("100.50")`` for KES, ``Decimal("100")`` for RWF).
    """
    exponent = _exponent(currency)
    example = "1500" if exponent == 0 else "100.50"
    if not isinstance(text, str):
        raise DomainError(
            "invalid_amount",
            f'Send the amount as a decimal string in {currency}, for example "{example}" '
            "(JSON numbers are not accepted, to avoid floating-point rounding).",
            param=param,
        )
    match = _DECIMAL_STRING.fullmatch(text)
    if match is None:
        raise DomainError(
            "invalid_amount",
            f"The amount must be a positive decimal string in {currency} with digits and at "
            f'most one point, for example "{example}" (no sign, spaces or exponent).',
            param=param,
        )
    whole, fraction = match.group(1), match.group(2) or ""
    if len(whole) > _MAX_INTEGER_DIGITS:
        raise DomainError("invalid_amount", "The amount has too many digits.", param=param)
    if len(fraction) > exponent:
        allowed = "no decimals" if exponent == 0 else f"at most {exponent} decimals"
        raise DomainError(
            "invalid_amount",
            f'{currency} amounts take {allowed}, for example "{example}".',
            param=param,
        )
    amount = Decimal(text).quantize(Decimal(1).scaleb(-exponent))
    if amount <= 0:
        raise DomainError("invalid_amount", "The amount must be greater than zero.", param=param)
    return amount


def check_amount(amount: Decimal, rule: AmountRule, currency: str, param: str = "amount") -> None:
    """Raise ``amount_too_small`` / ``amount_too_large`` / ``amount_not_whole`` if ``amount``
    breaks ``rule``; bounds are inclusive."""
    if amount < rule.minimum:
        raise DomainError(
            "amount_too_small",
            f"The minimum amount is {format_amount(rule.minimum, currency)} {currency}.",
            param=param,
        )
    if amount > rule.maximum:
        raise DomainError(
            "amount_too_large",
            f"The maximum amount is {format_amount(rule.maximum, currency)} {currency}.",
            param=param,
        )
    if rule.whole_units and amount != amount.to_integral_value():
        name = PROVIDER_NAMES.get(rule.provider, rule.provider or "This provider")
        raise DomainError("amount_not_whole", f"{name} takes whole {currency} only.", param=param)


# daily_per_payer is read by lipwa.domain.payer_limits, not by rule_for.
_OVERRIDE_KEYS = frozenset({"minimum", "maximum", "whole_units", "daily_per_payer"})


def _override_limit(value: object, currency: str, key: str) -> Decimal:
    param = f"limits.{currency}.{key}"
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise DomainError(
            "invalid_amount_limits", f'{key} must be a decimal string such as "100".', param
        )
    try:
        return parse_amount(str(value), currency, param=param)
    except DomainError as exc:
        raise DomainError("invalid_amount_limits", exc.message, param) from None


def rule_for(
    provider: str, currency: str, overrides: Mapping[str, Any] | None = None
) -> AmountRule:
    """The amount rule for ``provider`` in ``currency``, with a merchant's override applied.

    ``overrides`` is keyed by currency, e.g. ``{"KES": {"minimum": "10", "maximum": "70000"}}``;
    keys ``minimum``, ``maximum`` (decimal strings or ints) and ``whole_units`` (bool) are
    allowed. Overrides may widen the defaults: most MoMo defaults are estimates; M-Pesa's
    whole-unit rule is Daraja's own and cannot be switched off.
    """
    rule = DEFAULT_RULES.get((provider, currency))
    if rule is None:
        _exponent(currency)  # unknown currency altogether: same error, clearer list
        raise DomainError(
            "unsupported_currency",
            f"{PROVIDER_NAMES.get(provider, provider)} does not take {currency} payments.",
            param="currency",
        )
    if overrides is not None and not isinstance(overrides, Mapping):
        raise DomainError(
            "invalid_amount_limits", "Amount limits must be an object keyed by currency.", "limits"
        )
    override = (overrides or {}).get(currency)
    if not override:
        return rule
    if not isinstance(override, Mapping) or not set(override) <= _OVERRIDE_KEYS:
        raise DomainError(
            "invalid_amount_limits",
            f"Amount limits for {currency} take only minimum, maximum, whole_units and "
            "daily_per_payer.",
            param=f"limits.{currency}",
        )
    changes: dict[str, Any] = {}
    for key in ("minimum", "maximum"):
        if key in override:
            changes[key] = _override_limit(override[key], currency, key)
    if "whole_units" in override:
        if not isinstance(override["whole_units"], bool):
            raise DomainError(
                "invalid_amount_limits",
                "whole_units must be true or false.",
                param=f"limits.{currency}.whole_units",
            )
        if rule.whole_units and not override["whole_units"] and provider in WHOLE_UNITS_ONLY:
            raise DomainError(
                "invalid_amount_limits",
                f"{PROVIDER_NAMES[provider]} takes whole {currency} only (it refuses decimals): "
                "whole_units cannot be false.",
                param=f"limits.{currency}.whole_units",
            )
        changes["whole_units"] = override["whole_units"]
    result = replace(rule, **changes)
    if result.minimum > result.maximum:
        raise DomainError(
            "invalid_amount_limits",
            f"The {currency} minimum is above the maximum.",
            param=f"limits.{currency}",
        )
    return result


def format_amount(amount: Decimal, currency: str) -> str:
    """The API spelling of ``amount``: exactly the currency's exponent digits after the point
    (``"100.00"`` KES, ``"100"`` RWF). Raises ValueError if that would need rounding."""
    exponent = _exponent(currency)
    quantum = Decimal(1).scaleb(-exponent)
    try:
        quantised = amount.quantize(quantum)
    except InvalidOperation as exc:
        raise ValueError(f"cannot format {amount!r} as {currency}") from exc
    if quantised != amount:
        raise ValueError(f"{amount} has more decimals than {currency} allows")
    return f"{quantised:f}"


def to_provider_units(amount: Decimal) -> str:
    """What providers get: ``"100"`` for whole amounts, else two decimals (``"100.50"``)."""
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not a payable amount: {amount!r}")
    if amount == amount.to_integral_value():
        return f"{amount.quantize(Decimal(1)):f}"
    cents = amount.quantize(Decimal("0.01"))
    if cents != amount:
        raise ValueError(f"{amount} has more than two decimals")
    return f"{cents:f}"
