"""Amounts: strict decimal strings in, one canonical spelling out, limits inclusive."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lipwa.domain.errors import DomainError
from lipwa.domain.money import (
    CURRENCY_EXPONENT,
    DEFAULT_RULES,
    AmountRule,
    check_amount,
    format_amount,
    normalise_currency,
    parse_amount,
    rule_for,
    to_provider_units,
)

CURRENCIES = sorted(CURRENCY_EXPONENT)
RULE_KEYS = sorted(DEFAULT_RULES)


def error_of(fn: object, *args: object, **kwargs: object) -> DomainError:
    with pytest.raises(DomainError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    return info.value


def reference_accepts(text: str, currency: str) -> bool:
    """The contract, written independently: digits, optional point with 1..exponent digits,
    no sign or leading zeros, greater than zero."""
    exponent = CURRENCY_EXPONENT[currency]
    fraction = rf"(\.[0-9]{{1,{exponent}}})?" if exponent else ""
    return bool(re.fullmatch(rf"(0|[1-9][0-9]{{0,19}}){fraction}", text)) and Decimal(text) > 0


@st.composite
def valid_amount_text(draw: st.DrawFn, currency: str) -> str:
    whole = str(draw(st.integers(0, 10**15)))
    exponent = CURRENCY_EXPONENT[currency]
    decimals = draw(st.text("0123456789", min_size=0, max_size=exponent))
    text = f"{whole}.{decimals}" if decimals else whole
    return text if Decimal(text) > 0 else "1"


@given(st.sampled_from(CURRENCIES), st.data())
def test_valid_strings_parse_and_round_trip(currency: str, data: st.DataObject) -> None:
    text = data.draw(valid_amount_text(currency))
    amount = parse_amount(text, currency)
    assert amount == Decimal(text)
    assert amount.as_tuple().exponent == -CURRENCY_EXPONENT[currency]  # quantised
    canonical = format_amount(amount, currency)
    assert parse_amount(canonical, currency) == amount
    assert format_amount(parse_amount(canonical, currency), currency) == canonical


@given(st.sampled_from(CURRENCIES), st.integers(1, 10**18))
def test_format_amount_uses_the_currency_exponent(currency: str, minor: int) -> None:
    exponent = CURRENCY_EXPONENT[currency]
    amount = Decimal(minor).scaleb(-exponent)
    text = format_amount(amount, currency)
    if exponent:
        assert re.fullmatch(rf"[0-9]+\.[0-9]{{{exponent}}}", text)
    else:
        assert text.isdigit()
    assert parse_amount(text, currency) == amount


def test_format_examples() -> None:
    assert format_amount(Decimal("100"), "KES") == "100.00"
    assert format_amount(Decimal("100.5"), "KES") == "100.50"
    assert format_amount(Decimal("100"), "RWF") == "100"
    assert format_amount(Decimal("1E+3"), "UGX") == "1000"
    with pytest.raises(ValueError):
        format_amount(Decimal("1.005"), "KES")
    with pytest.raises(ValueError):
        format_amount(Decimal("1.5"), "RWF")


@given(st.sampled_from(CURRENCIES), st.text(alphabet="0123456789.-+eE ,_x١", max_size=12))
def test_parse_accepts_exactly_the_reference_language(currency: str, text: str) -> None:
    if reference_accepts(text, currency):
        assert parse_amount(text, currency) == Decimal(text)
    else:
        error = error_of(parse_amount, text, currency)
        assert (error.code, error.param) == ("invalid_amount", "amount")


@given(
    st.sampled_from(CURRENCIES),
    st.one_of(st.floats(), st.integers(), st.booleans(), st.none(), st.just(Decimal("100"))),
)
def test_non_strings_are_refused_with_a_hint(currency: str, value: object) -> None:
    error = error_of(parse_amount, value, currency, param="payout.amount")
    assert error.code == "invalid_amount" and error.param == "payout.amount"
    assert "decimal string" in error.message


@given(st.sampled_from(CURRENCIES), st.integers(1, 10**6), st.integers(-3, 12))
def test_exponent_notation_is_refused(currency: str, mantissa: int, power: int) -> None:
    for text in (f"{mantissa}e{power}", f"{mantissa}E{power}", f"{mantissa}.0e{power}"):
        assert error_of(parse_amount, text, currency).code == "invalid_amount"


@given(st.sampled_from(CURRENCIES), st.integers(1, 10**9), st.integers(1, 3), st.data())
def test_too_many_decimals_are_refused(
    currency: str, whole: int, extra: int, data: st.DataObject
) -> None:
    digits = CURRENCY_EXPONENT[currency] + extra
    fraction = data.draw(st.text("0123456789", min_size=digits, max_size=digits))
    assert error_of(parse_amount, f"{whole}.{fraction}", currency).code == "invalid_amount"


@pytest.mark.parametrize(
    "text",
    [
        "-1",
        "-0.50",
        "+5",
        "0",
        "0.00",
        "00",
        "0100",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "1e3",
        "1,000",
        "1_000",
        " 100",
        "100 ",
        "",
        ".",
        ".5",
        "5.",
        "1.2.3",
        "١٠٠",
        "0x10",
        "100\n",
    ],
)
def test_bad_strings(text: str) -> None:
    assert error_of(parse_amount, text, "KES").code == "invalid_amount"


def test_decimals_per_currency() -> None:
    assert parse_amount("100.5", "KES") == Decimal("100.50")
    assert error_of(parse_amount, "100.0", "RWF").code == "invalid_amount"
    assert error_of(parse_amount, "100.000", "KES").code == "invalid_amount"


@pytest.mark.parametrize("currency", ["XYZ", "kes", "", None, 1])
def test_unknown_currency(currency: object) -> None:
    for call in (
        lambda: parse_amount("100", currency),  # type: ignore[arg-type]
        lambda: format_amount(Decimal(1), currency),  # type: ignore[arg-type]
    ):
        with pytest.raises(DomainError) as info:
            call()
        assert (info.value.code, info.value.param) == ("unsupported_currency", "currency")


def test_normalise_currency() -> None:
    assert normalise_currency(" kes ") == "KES"
    assert error_of(normalise_currency, "shillings").code == "unsupported_currency"
    assert error_of(normalise_currency, 404).code == "unsupported_currency"


def test_default_rules_are_coherent() -> None:
    assert DEFAULT_RULES[("mpesa", "KES")] == AmountRule(
        Decimal(1), Decimal(250_000), True, "mpesa"
    )
    assert DEFAULT_RULES[("momo", "RWF")].minimum == 100
    assert DEFAULT_RULES[("momo", "RWF")].maximum == 1_000_000
    assert DEFAULT_RULES[("momo", "EUR")].whole_units is False
    for (provider, currency), rule in DEFAULT_RULES.items():
        assert currency in CURRENCY_EXPONENT and provider in ("mpesa", "momo")
        assert 0 < rule.minimum <= rule.maximum
        assert rule.provider == provider
        if CURRENCY_EXPONENT[currency] == 0:
            assert rule.whole_units


amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10**8), places=2)


def near_bounds(rule: AmountRule) -> st.SearchStrategy[Decimal]:
    offsets = st.sampled_from(
        [Decimal("-1"), Decimal("-0.01"), Decimal(0), Decimal("0.01"), Decimal("1"), Decimal("0.5")]
    )
    return st.one_of(
        amounts,
        st.builds(lambda o: rule.minimum + o, offsets),
        st.builds(lambda o: rule.maximum + o, offsets),
    ).filter(lambda a: a > 0)


@given(st.sampled_from(RULE_KEYS), st.data())
def test_check_amount_accepts_exactly_the_rule(key: tuple[str, str], data: st.DataObject) -> None:
    _, currency = key
    rule = DEFAULT_RULES[key]
    amount = data.draw(near_bounds(rule))
    within = rule.minimum <= amount <= rule.maximum
    whole_ok = not rule.whole_units or amount == int(amount)
    if within and whole_ok:
        check_amount(amount, rule, currency)
        return
    error = error_of(check_amount, amount, rule, currency)
    assert error.param == "amount"
    if amount < rule.minimum:
        assert error.code == "amount_too_small"
        assert f"{format_amount(rule.minimum, currency)} {currency}" in error.message
    elif amount > rule.maximum:
        assert error.code == "amount_too_large"
        assert f"{format_amount(rule.maximum, currency)} {currency}" in error.message
    else:
        assert error.code == "amount_not_whole"
        assert f"takes whole {currency} only" in error.message


def test_not_whole_message_names_the_provider() -> None:
    error = error_of(check_amount, Decimal("10.50"), rule_for("mpesa", "KES"), "KES")
    assert error.message == "M-Pesa takes whole KES only."
    check_amount(Decimal("1.50"), rule_for("momo", "EUR"), "EUR")


@given(
    st.sampled_from(RULE_KEYS),
    st.integers(1, 10**7),
    st.integers(0, 10**7),
    st.sampled_from(["str", "int"]),
)
def test_rule_for_applies_overrides(key: tuple[str, str], low: int, span: int, kind: str) -> None:
    provider, currency = key
    high = low + span
    as_value = str if kind == "str" else int
    overrides = {
        currency: {"minimum": as_value(low), "maximum": as_value(high)},
        "XOF" if currency != "XOF" else "KES": {"minimum": "999999999"},
    }
    rule = rule_for(provider, currency, overrides)
    assert (rule.minimum, rule.maximum) == (low, high)
    assert rule.whole_units == DEFAULT_RULES[key].whole_units
    if low > 1:
        assert error_of(check_amount, Decimal(low - 1), rule, currency).code == "amount_too_small"
    assert error_of(check_amount, Decimal(high + 1), rule, currency).code == "amount_too_large"
    check_amount(Decimal(low), rule, currency)
    check_amount(Decimal(high), rule, currency)


def test_rule_for_partial_and_bad_overrides() -> None:
    assert rule_for("mpesa", "KES") == DEFAULT_RULES[("mpesa", "KES")]
    assert rule_for("mpesa", "KES", {}) == DEFAULT_RULES[("mpesa", "KES")]
    rule = rule_for("mpesa", "KES", {"KES": {"minimum": "10", "maximum": "70000"}})
    assert (rule.minimum, rule.maximum, rule.whole_units) == (10, 70_000, True)
    assert rule_for("mpesa", "KES", {"KES": {"maximum": "500"}}).minimum == 1
    assert rule_for("momo", "EUR", {"EUR": {"whole_units": True}}).whole_units is True
    # MoMo's whole-unit defaults are estimates a merchant may loosen; Daraja's is its own
    assert rule_for("momo", "XAF", {"XAF": {"whole_units": False}}).whole_units is False
    error = error_of(rule_for, "mpesa", "KES", {"KES": {"whole_units": False}})
    assert (error.code, error.param) == ("invalid_amount_limits", "limits.KES.whole_units")
    # limits are amounts of the currency: cents are fine for KES (the whole-unit rule still
    # applies to payments), not for RWF
    assert rule_for("mpesa", "KES", {"KES": {"minimum": "1.5"}}).minimum == Decimal("1.50")
    error = error_of(rule_for, "momo", "RWF", {"RWF": {"minimum": "1.5"}})
    assert (error.code, error.param) == ("invalid_amount_limits", "limits.RWF.minimum")
    bad: list[dict[str, object]] = [
        {"minimum": "100", "maximum": "10"},
        {"minimum": 1.5},
        {"minimum": True},
        {"minimum": "-1"},
        {"minimum": "0"},
        {"maxium": "10"},
        {"whole_units": "yes"},
    ]
    for override in bad:
        error = error_of(rule_for, "mpesa", "KES", {"KES": override})
        assert error.code == "invalid_amount_limits"
        assert error.param is not None and error.param.startswith("limits.KES")
    assert error_of(rule_for, "mpesa", "KES", {"KES": "cheap"}).code == "invalid_amount_limits"
    assert error_of(rule_for, "mpesa", "KES", ["KES"]).code == "invalid_amount_limits"


@pytest.mark.parametrize(
    ("provider", "currency"), [("mpesa", "RWF"), ("momo", "KES"), ("momo", "XYZ"), ("x", "KES")]
)
def test_rule_for_unknown_pair(provider: str, currency: str) -> None:
    error = error_of(rule_for, provider, currency)
    assert (error.code, error.param) == ("unsupported_currency", "currency")


@given(st.integers(0, 10**15), st.integers(0, 99))
def test_to_provider_units(whole: int, cents: int) -> None:
    amount = Decimal(whole) + Decimal(cents) / 100
    text = to_provider_units(amount)
    assert Decimal(text) == amount
    if cents == 0:
        assert text == str(whole)
    else:
        assert re.fullmatch(r"[0-9]+\.[0-9]{2}", text)
    assert to_provider_units(Decimal(whole).quantize(Decimal("0.01"))) == str(whole)


def test_to_provider_units_refuses_sub_cent_and_negative() -> None:
    assert to_provider_units(Decimal("100.5")) == "100.50"
    for bad in (Decimal("1.005"), Decimal("-1"), Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(ValueError):
            to_provider_units(bad)
