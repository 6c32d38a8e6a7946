"""Payer phone numbers: normalisation, mobile-network detection, masking.

``normalise_phone`` accepts the forms people type (``0708374149``, ``708374149``,
``+254 708 374 149``, ``254-708-374-149``, ``00254708374149``) for Kenya, Rwanda and Uganda,
plus the MTN MoMo sandbox magic numbers ``46733123450``..``46733123464``, and returns one
canonical ``Phone``. Validity and length come from libphonenumber metadata; the network comes
from its carrier (prefix) data, which knows nothing about number portability: merchants can
correct ranges with ``prefix_overrides``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import phonenumbers
from phonenumbers import PhoneNumberType, carrier

from lipwa.domain.errors import DomainError


class Network(StrEnum):
    SAFARICOM = "safaricom"
    AIRTEL_KE = "airtel_ke"
    TELKOM_KE = "telkom_ke"
    MTN_RW = "mtn_rw"
    AIRTEL_RW = "airtel_rw"
    MTN_UG = "mtn_ug"
    AIRTEL_UG = "airtel_ug"
    MTN_SANDBOX = "mtn_sandbox"  # MoMo sandbox magic numbers 46733123450..46733123464
    UNKNOWN = "unknown"


SUPPORTED_COUNTRIES = ("KE", "RW", "UG")
_COUNTRY_CODES = {"KE": 254, "RW": 250, "UG": 256}
SANDBOX_COUNTRY = "SE"
SANDBOX_MSISDNS = frozenset(f"467331234{n}" for n in range(50, 65))

# E.164-digit prefixes that beat libphonenumber's carrier data (longest prefix wins).
# Checked against phonenumbers 9.0.43 for KE, RW and UG: it already has Safaricom on
# 2547[0-2], 25474x (but 744/747), 25475[7-9], 25476[89], 25479, 25411, 25414, 25418; Airtel on
# 25410 (Airtel, not Safaricom, holds 0100-0102), 25473, 25475[0-6], 25476x, 25478; Telkom on
# 25477, 254761; MTN Rwanda on 25078/25079, Airtel Rwanda on 25072/25073; MTN Uganda on
# 25676-25679 (but 256798/9 Africell) and 256724, 256737; Airtel Uganda on 25670, 25674,
# 25675, 25673[0-2]. No correction was needed, so the table is empty; add a range here (with
# its source) when an operator reports a wrong network.
DEFAULT_PREFIXES: Mapping[str, Network] = {}

_CARRIERS: dict[tuple[str, str], Network] = {
    ("KE", "Safaricom"): Network.SAFARICOM,
    ("KE", "Airtel"): Network.AIRTEL_KE,
    ("KE", "Telkom"): Network.TELKOM_KE,
    ("RW", "MTN"): Network.MTN_RW,
    ("RW", "Airtel"): Network.AIRTEL_RW,
    ("UG", "MTN"): Network.MTN_UG,
    ("UG", "Airtel"): Network.AIRTEL_UG,
}

_PROVIDERS: dict[Network, str] = {
    Network.SAFARICOM: "mpesa",
    Network.MTN_RW: "momo",
    Network.MTN_UG: "momo",
    Network.MTN_SANDBOX: "momo",
}

_SEPARATORS = frozenset(" -.()\u00a0")
_ALLOWED = frozenset("0123456789+") | _SEPARATORS
_MAX_INPUT = 32
_NSN_LENGTH = 9  # national significant number length of every KE/RW/UG mobile number

_FORMS_HINT = (
    "Send a mobile number with its country code, such as +254708374149, 250788123456 or "
    "+256 772 123 456, or a local number such as 0708374149 together with the country."
)


@dataclass(frozen=True)
class Phone:
    """A normalised mobile number. ``repr`` shows only the masked form."""

    e164: str = field(repr=False)  # "+254708374149"
    msisdn: str = field(repr=False)  # "254708374149": what both providers want
    country: str  # ISO 3166 alpha-2: "KE", "RW", "UG", or "SE" for the MoMo sandbox
    network: Network

    def masked(self) -> str:
        """For logs: first 4 and last 3 digits, e.g. ``2547****149``."""
        return f"{self.msisdn[:4]}****{self.msisdn[-3:]}"

    def __repr__(self) -> str:
        return f"Phone({self.masked()!r}, country={self.country!r}, network={self.network!r})"


def provider_for_network(network: Network) -> str | None:
    """The Lipwa provider that can collect from ``network`` (None: no provider yet)."""
    return _PROVIDERS.get(network)


def _invalid(param: str, detail: str) -> DomainError:
    return DomainError("invalid_phone", f"{detail} {_FORMS_HINT}", param=param)


def _is_mobile(number: phonenumbers.PhoneNumber) -> bool:
    return phonenumbers.number_type(number) in (
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )


def _network_for(
    msisdn: str,
    country: str,
    number: phonenumbers.PhoneNumber,
    prefix_overrides: Mapping[str, Network] | None,
) -> Network:
    for table in (prefix_overrides or {}, DEFAULT_PREFIXES):
        bad = [prefix for prefix in table if not (prefix.isascii() and prefix.isdigit())]
        if bad:
            raise ValueError(f"phone prefix overrides must be E.164 digits, not {bad!r}")
        for prefix in sorted(table, key=len, reverse=True):
            if msisdn.startswith(prefix):
                return Network(table[prefix])
    name = carrier.name_for_number(number, "en")
    return _CARRIERS.get((country, name), Network.UNKNOWN)


def _local_candidates(digits: str, countries: tuple[str, ...]) -> list[phonenumbers.PhoneNumber]:
    """Parse a local number in each country; keep those where it is a valid mobile number."""
    found = []
    for country in countries:
        try:
            number = phonenumbers.parse(digits, country)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number) and _is_mobile(number):
            found.append(number)
    return found


def normalise_phone(
    raw: object,
    default_country: str | None = None,
    prefix_overrides: Mapping[str, Network] | None = None,
    param: str = "phone",
) -> Phone:
    """Normalise a payer's phone number; raise ``DomainError`` if it cannot be a supported mobile.

    Numbers with a country code (``+``, ``00`` or bare ``254…``) are taken as they are. Local
    numbers (``0…`` or 9 digits) use ``default_country``; without one they are accepted only if
    exactly one of KE, RW, UG considers them a valid mobile number (else ``ambiguous_phone``).
    Codes: ``invalid_phone``, ``ambiguous_phone``, ``unsupported_country``.
    """
    if default_country is not None:
        default_country = default_country.upper()
        if default_country not in SUPPORTED_COUNTRIES:
            raise DomainError(
                "unsupported_country",
                f"Country {default_country!r} is not supported; use one of "
                f"{', '.join(SUPPORTED_COUNTRIES)}.",
                param="country",
            )
    if not isinstance(raw, str):
        raise _invalid(param, "The phone number must be a string.")
    text = raw.strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    plus = text.find("+")  # allowed once, first, or just after an opening parenthesis
    misplaced_plus = text.count("+") > 1 or (plus >= 0 and text[:plus].strip("(") != "")
    if not digits or len(text) > _MAX_INPUT or not set(text) <= _ALLOWED or misplaced_plus:
        raise _invalid(
            param, "The phone number may contain only digits, spaces, dashes and a leading +."
        )
    if plus >= 0:
        international = digits
    elif digits.startswith("00"):
        international = digits[2:]
    elif digits.startswith("0") or len(digits) <= _NSN_LENGTH:
        international = ""
    else:
        international = digits

    if international:
        if international in SANDBOX_MSISDNS:
            return Phone("+" + international, international, SANDBOX_COUNTRY, Network.MTN_SANDBOX)
        try:
            number = phonenumbers.parse("+" + international, None)
        except phonenumbers.NumberParseException:
            raise _invalid(param, "This is not a valid phone number.") from None
        if not phonenumbers.is_valid_number(number):
            raise _invalid(param, "This is not a valid phone number.")
        country = phonenumbers.region_code_for_number(number) or ""
        if country not in SUPPORTED_COUNTRIES:
            raise DomainError(
                "unsupported_country",
                "Lipwa takes mobile numbers from Kenya (+254), Rwanda (+250) and Uganda (+256) "
                "only.",
                param=param,
            )
        if not _is_mobile(number):
            raise _invalid(param, "This is not a mobile number.")
    else:
        countries = (default_country,) if default_country else SUPPORTED_COUNTRIES
        candidates = _local_candidates(digits, countries)
        if not candidates:
            where = f" in {default_country}" if default_country else ""
            raise _invalid(param, f"This is not a valid mobile number{where}.")
        if len(candidates) > 1:
            raise DomainError(
                "ambiguous_phone",
                "This local number is valid in more than one country. Add the country code "
                "(+254 Kenya, +250 Rwanda, +256 Uganda) or send the country.",
                param=param,
            )
        number = candidates[0]
        country = phonenumbers.region_code_for_number(number) or ""

    msisdn = f"{number.country_code}{number.national_number}"
    network = _network_for(msisdn, country, number, prefix_overrides)
    return Phone("+" + msisdn, msisdn, country, network)
