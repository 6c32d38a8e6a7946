"""Phone normalisation: every form of a number maps to one E.164 and the right network."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lipwa.domain.errors import DomainError
from lipwa.domain.phones import (
    SANDBOX_MSISDNS,
    SUPPORTED_COUNTRIES,
    Network,
    Phone,
    normalise_phone,
    provider_for_network,
)

COUNTRY_CODE = {"KE": "254", "RW": "250", "UG": "256"}

# National-significant-number prefixes per network, written from the operators' published
# ranges (daraja.md §2.1, momo.md §8, CHECKLISTS "Payment rules"), not read from the code.
NETWORK_PREFIXES: dict[tuple[str, Network], tuple[str, ...]] = {
    ("KE", Network.SAFARICOM): (
        "70",
        "71",
        "72",
        "740",
        "741",
        "742",
        "743",
        "745",
        "746",
        "748",
        "757",
        "758",
        "759",
        "768",
        "769",
        "79",
        "11",
    ),
    ("KE", Network.AIRTEL_KE): (
        "73",
        "750",
        "751",
        "752",
        "753",
        "754",
        "755",
        "756",
        "78",
        "100",
        "101",
        "102",
    ),
    ("KE", Network.TELKOM_KE): ("77",),
    ("RW", Network.MTN_RW): ("78", "79"),
    ("RW", Network.AIRTEL_RW): ("72", "73"),
    ("UG", Network.MTN_UG): ("76", "77", "78", "790", "791", "792", "793", "794", "795"),
    ("UG", Network.AIRTEL_UG): ("70", "74", "75"),
}
PREFIX_CHOICES = [
    (country, network, prefix)
    for (country, network), prefixes in NETWORK_PREFIXES.items()
    for prefix in prefixes
]


@st.composite
def subscriber(draw: st.DrawFn) -> tuple[str, Network, str]:
    """(country, network, 9-digit national significant number)."""
    country, network, prefix = draw(st.sampled_from(PREFIX_CHOICES))
    rest = draw(st.text("0123456789", min_size=9 - len(prefix), max_size=9 - len(prefix)))
    return country, network, prefix + rest


def spaced(draw: st.DrawFn, digits: str) -> str:
    """Render digits with a random separator style (none, spaces, dashes, dots) in groups."""
    sep = draw(st.sampled_from(["", " ", "-", ".", " - "]))
    if not sep:
        return digits
    cuts = sorted(draw(st.sets(st.integers(1, len(digits) - 1), max_size=4)))
    parts = [digits[a:b] for a, b in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
    return sep.join(parts)


@st.composite
def international_form(draw: st.DrawFn, cc: str, nsn: str) -> str:
    body = spaced(draw, nsn)
    style = draw(st.sampled_from(["+cc", "cc", "00cc", "(+cc)", "+cc (0)", "+cc0"]))
    head = {
        "+cc": f"+{cc} ",
        "cc": f"{cc} ",
        "00cc": f"00{cc} ",
        "(+cc)": f"(+{cc}) ",
        "+cc (0)": f"+{cc} (0)",
        "+cc0": f"+{cc}0",
    }[style]
    if not draw(st.booleans()):
        head = head.replace(" ", "")
    text = head + body
    return draw(st.sampled_from([text, f"  {text} "]))


@st.composite
def local_form(draw: st.DrawFn, nsn: str) -> str:
    return draw(st.sampled_from(["0", ""])) + spaced(draw, nsn)


def expected_phone(country: str, network: Network, nsn: str) -> Phone:
    msisdn = COUNTRY_CODE[country] + nsn
    return Phone("+" + msisdn, msisdn, country, network)


def code_of(raw: object, **kwargs: object) -> str:
    with pytest.raises(DomainError) as info:
        normalise_phone(raw, **kwargs)  # type: ignore[arg-type]
    assert info.value.param in ("phone", "country", "payer_phone")
    return info.value.code


@given(subscriber(), st.data())
def test_international_forms_map_to_one_e164_whatever_the_default_country(
    sub: tuple[str, Network, str], data: st.DataObject
) -> None:
    country, network, nsn = sub
    text = data.draw(international_form(COUNTRY_CODE[country], nsn))
    default = data.draw(st.sampled_from([None, *SUPPORTED_COUNTRIES]))
    assert normalise_phone(text, default) == expected_phone(country, network, nsn)


@given(subscriber(), st.data())
def test_local_forms_with_country_map_to_the_same_e164(
    sub: tuple[str, Network, str], data: st.DataObject
) -> None:
    country, network, nsn = sub
    text = data.draw(local_form(nsn))
    default = data.draw(st.sampled_from([country, country.lower()]))
    phone = normalise_phone(text, default)
    assert phone == expected_phone(country, network, nsn)
    assert phone.e164 == "+" + phone.msisdn and len(phone.msisdn) == 12


@given(subscriber(), st.data())
def test_local_forms_without_country_are_accepted_only_when_unambiguous(
    sub: tuple[str, Network, str], data: st.DataObject
) -> None:
    country, network, nsn = sub
    text = data.draw(local_form(nsn))
    valid_in = [
        c
        for c in SUPPORTED_COUNTRIES
        if phonenumbers.is_valid_number(n := phonenumbers.parse(nsn, c))
        and phonenumbers.number_type(n) == phonenumbers.PhoneNumberType.MOBILE
    ]
    if valid_in == [country]:
        assert normalise_phone(text) == expected_phone(country, network, nsn)
    else:
        assert country in valid_in
        assert code_of(text) == "ambiguous_phone"


def test_local_examples() -> None:
    assert normalise_phone("0111222333").network is Network.SAFARICOM  # only Kenya has 01…
    assert normalise_phone("0111222333").e164 == "+254111222333"
    assert code_of("0788123456") == "ambiguous_phone"  # KE Airtel, RW MTN, UG MTN
    assert normalise_phone("0788123456", "RW").network is Network.MTN_RW
    assert normalise_phone("0788123456", "UG").network is Network.MTN_UG
    assert normalise_phone("0788123456", "KE").network is Network.AIRTEL_KE
    assert normalise_phone("708374149", "KE").msisdn == "254708374149"
    # an explicit country code beats the default country
    assert normalise_phone("+256772123456", "KE").country == "UG"


@pytest.mark.parametrize(
    "text",
    ["46733123450", "+46733123450", "0046733123450", "+46 733 123 450", "+46-733-123-464"],
)
def test_sandbox_magic_numbers(text: str) -> None:
    phone = normalise_phone(text, "KE")
    assert phone.network is Network.MTN_SANDBOX
    assert phone.country == "SE"
    assert phone.msisdn in SANDBOX_MSISDNS and phone.e164 == "+" + phone.msisdn
    assert provider_for_network(phone.network) == "momo"


def test_all_fifteen_sandbox_numbers() -> None:
    for n in range(46733123450, 46733123465):
        assert normalise_phone(f"+{n}").network is Network.MTN_SANDBOX
    for n in (46733123449, 46733123465, 46701234567):  # real Swedish mobiles
        assert code_of(f"+{n}") == "unsupported_country"


@given(subscriber(), st.data())
def test_letters_are_refused(sub: tuple[str, Network, str], data: st.DataObject) -> None:
    country, _, nsn = sub
    text = data.draw(international_form(COUNTRY_CODE[country], nsn))
    at = data.draw(st.integers(0, len(text)))
    letter = data.draw(st.sampled_from("abcxyzOIlo#*,;/_"))
    assert code_of(text[:at] + letter + text[at:]) == "invalid_phone"


@given(subscriber(), st.integers(1, 5), st.sampled_from(["+", "0"]))
def test_too_short_is_refused(sub: tuple[str, Network, str], cut: int, head: str) -> None:
    country, _, nsn = sub
    short = nsn[:-cut]
    text = f"+{COUNTRY_CODE[country]}{short}" if head == "+" else f"0{short}"
    assert code_of(text, default_country=country) == "invalid_phone"


@given(subscriber(), st.text("0123456789", min_size=1, max_size=4), st.sampled_from(["+", "0"]))
def test_too_long_is_refused(sub: tuple[str, Network, str], extra: str, head: str) -> None:
    country, _, nsn = sub
    text = f"+{COUNTRY_CODE[country]}{nsn}{extra}" if head == "+" else f"0{nsn}{extra}"
    assert code_of(text, default_country=country) == "invalid_phone"


LANDLINE_PREFIXES = {"KE": "20", "RW": "252", "UG": "414"}  # Nairobi, Kigali, Kampala


@given(st.sampled_from(SUPPORTED_COUNTRIES), st.text("0123456789", min_size=9, max_size=9))
def test_landlines_are_refused(country: str, tail: str) -> None:
    nsn = (LANDLINE_PREFIXES[country] + tail)[:9]
    number = phonenumbers.parse("+" + COUNTRY_CODE[country] + nsn)
    assume(phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.FIXED_LINE)
    assert code_of("+" + COUNTRY_CODE[country] + nsn) == "invalid_phone"
    assert code_of("0" + nsn, default_country=country) == "invalid_phone"


@pytest.mark.parametrize("region", ["TZ", "GH", "NG", "US", "GB", "ZM", "CM", "BI", "CD", "SE"])
def test_other_countries_are_unsupported(region: str) -> None:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    assert code_of(e164) == "unsupported_country"
    assert code_of(e164[1:]) == "unsupported_country"


@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.binary(),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(), st.text(), max_size=1),
    )
)
def test_non_strings_are_invalid(raw: object) -> None:
    assert code_of(raw) == "invalid_phone"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "+",
        "++254708374149",
        "254+708374149",
        "0",
        "1" * 40,
        "٠٧٠٨٣٧٤١٤٩",
        "0708374149\n0708374149",
        "+254 708 374 149 ext 2",
    ],
)
def test_garbage_is_invalid(raw: str) -> None:
    assert code_of(raw, default_country="KE") == "invalid_phone"


def test_error_message_shows_accepted_forms_and_not_the_input() -> None:
    with pytest.raises(DomainError) as info:
        normalise_phone("07991234", "KE", param="payer_phone")
    assert info.value.param == "payer_phone"
    assert "+254708374149" in info.value.message and "07991234" not in info.value.message


def test_unsupported_default_country() -> None:
    assert code_of("0708374149", default_country="TZ") == "unsupported_country"


@given(subscriber())
def test_masking_never_reveals_the_middle_digits(sub: tuple[str, Network, str]) -> None:
    phone = normalise_phone("+" + COUNTRY_CODE[sub[0]] + sub[2])
    masked = phone.masked()
    assert masked == phone.msisdn[:4] + "****" + phone.msisdn[-3:]
    assert sum(ch.isdigit() for ch in masked) == 7
    assert phone.msisdn not in repr(phone) and phone.msisdn[4:-3] not in repr(phone)[20:]


def test_prefix_overrides_win_over_carrier_data() -> None:
    assert normalise_phone("0111222333", "KE").network is Network.SAFARICOM
    overrides = {"25411": Network.AIRTEL_KE}
    assert normalise_phone("0111222333", "KE", overrides).network is Network.AIRTEL_KE
    longest = {"2547": Network.TELKOM_KE, "254708": Network.AIRTEL_KE}
    assert normalise_phone("0708374149", "KE", longest).network is Network.AIRTEL_KE
    assert normalise_phone("0718374149", "KE", longest).network is Network.TELKOM_KE
    assert normalise_phone("0718374149", "KE", {"2547": "airtel_ke"}).network is Network.AIRTEL_KE  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        normalise_phone("0708374149", "KE", {"+2547": Network.SAFARICOM})


def test_unknown_carrier_and_providers() -> None:
    assert normalise_phone("+254744123456").network is Network.UNKNOWN  # Homeland Media
    assert normalise_phone("+256712345678").network is Network.UNKNOWN  # UTL
    assert provider_for_network(Network.SAFARICOM) == "mpesa"
    for network in (Network.MTN_RW, Network.MTN_UG, Network.MTN_SANDBOX):
        assert provider_for_network(network) == "momo"
    for network in (
        Network.AIRTEL_KE,
        Network.TELKOM_KE,
        Network.AIRTEL_RW,
        Network.AIRTEL_UG,
        Network.UNKNOWN,
    ):
        assert provider_for_network(network) is None
