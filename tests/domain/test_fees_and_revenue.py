"""Fees in exact decimals, and revenue lines on a small known dataset."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lipwa.domain.errors import DomainError
from lipwa.domain.fees import (
    MOMO,
    MPESA_PAYBILL,
    MPESA_TILL,
    NO_FEE,
    Tariff,
    check_fee_settings,
    compute_fees,
    parse_tariff,
    platform_tariff,
    provider_tariff,
)
from lipwa.domain.money import CURRENCY_EXPONENT
from lipwa.domain.revenue import PaymentFigures, RefundFigures, aggregate, local_day


def test_default_provider_estimates() -> None:
    assert provider_tariff({}, "mpesa", "paybill") is MPESA_PAYBILL
    assert provider_tariff({}, "mpesa", "till") is MPESA_TILL
    assert provider_tariff({}, "momo", None) is MOMO
    assert all(t.estimate for t in (MPESA_PAYBILL, MPESA_TILL, MOMO))
    # Paybill bands: (100, 500] → 5, (500, 1000] → 10; amounts up to 100 are free.
    assert [MPESA_PAYBILL.fee(Decimal(a)) for a in (1, 100, 101, 500, 501, 1000, 250_000)] == [
        0, 0, 5, 5, 10, 10, 108,
    ]  # fmt: skip
    assert MPESA_TILL.fee(Decimal(1000)) == Decimal("5.5")
    assert MPESA_TILL.fee(Decimal(100_000)) == Decimal(200)  # capped


def test_the_split_is_exact_and_rounded_to_the_currency() -> None:
    platform = parse_tariff({"percent": "2.0", "fixed": "1"}, "p", estimate=False)
    fees = compute_fees(Decimal("1000.00"), "KES", MPESA_PAYBILL, platform)
    assert (fees.provider_fee, fees.platform_fee, fees.net) == (
        Decimal(10), Decimal("21.00"), Decimal("969.00"),
    )  # fmt: skip
    assert fees.provider_fee_estimated
    # RWF has no minor unit: 1.5 % of 1,001 = 15.015 → 15; half-up at the unit.
    rwf = compute_fees(
        Decimal(1001), "RWF", NO_FEE, parse_tariff({"percent": "1.5"}, "p", estimate=False)
    )
    assert rwf.platform_fee == Decimal(15) and rwf.net == Decimal(986)
    assert compute_fees(Decimal(1030), "RWF", NO_FEE, Tariff(percent=Decimal(5))).platform_fee == (
        Decimal(52)  # 51.5 rounds half up
    )
    # Fees never exceed the amount: the platform takes at most what the provider left.
    tiny = compute_fees(Decimal(3), "KES", Tariff(fixed=Decimal(2)), Tariff(fixed=Decimal(5)))
    assert (tiny.provider_fee, tiny.platform_fee, tiny.net) == (Decimal(2), Decimal(1), 0)


def test_merchant_settings_are_validated() -> None:
    settings = {
        "platform_fees": {"mpesa": {"percent": "2.5", "fixed": "0"}},
        "provider_fees": {"momo": {"bands": [["0", "1000", "5"], ["1000", None, "10"]]}},
    }
    check_fee_settings(settings)
    assert platform_tariff(settings, "mpesa").percent == Decimal("2.5")
    assert platform_tariff(settings, "momo") is NO_FEE
    momo = provider_tariff(settings, "momo", None)
    assert not momo.estimate and momo.fee(Decimal(1500)) == Decimal(10)
    for bad, param in [
        ({"platform_fees": {"mpesa": {"percent": 2.5}}}, "platform_fees.mpesa.percent"),
        ({"platform_fees": {"mpesa": {"percent": "-1"}}}, "platform_fees.mpesa.percent"),
        ({"platform_fees": {"mpesa": {"percent": "101"}}}, "platform_fees.mpesa.percent"),
        ({"platform_fees": {"mpesa": {"rate": "1"}}}, "platform_fees.mpesa"),
        ({"platform_fees": ["2%"]}, "platform_fees"),
        (
            {"provider_fees": {"mpesa": {"bands": [["0", "x", "1"]]}}},
            "provider_fees.mpesa.bands[0]",
        ),
        # too large to round to cents: every success would have failed to compute its fees
        ({"platform_fees": {"mpesa": {"fixed": "1e30"}}}, "platform_fees.mpesa.fixed"),
        (
            {"provider_fees": {"mpesa": {"bands": [["0", None, "1" + "0" * 30]]}}},
            "provider_fees.mpesa.bands[0]",
        ),
    ]:
        with pytest.raises(DomainError) as caught:
            check_fee_settings(bad)
        assert caught.value.param == param and caught.value.code == "invalid_fee_settings"


DECIMALS = st.decimals(min_value=0, max_value=100, places=3, allow_nan=False)
FIXED = st.decimals(min_value=0, max_value=500, places=2, allow_nan=False)


@settings(max_examples=500, deadline=None)
@given(
    currency=st.sampled_from(["KES", "RWF", "UGX", "EUR"]),
    amount=st.integers(1, 10**9),
    provider_percent=DECIMALS,
    provider_fixed=FIXED,
    platform_percent=DECIMALS,
    platform_fixed=FIXED,
    banded=st.booleans(),
)
def test_fees_always_add_up_exactly(
    currency: str,
    amount: int,
    provider_percent: Decimal,
    provider_fixed: Decimal,
    platform_percent: Decimal,
    platform_fixed: Decimal,
    banded: bool,
) -> None:
    exponent = CURRENCY_EXPONENT[currency]
    gross = (Decimal(amount) / 10**exponent).quantize(Decimal(1).scaleb(-exponent))
    provider = MPESA_PAYBILL if banded else Tariff(percent=provider_percent, fixed=provider_fixed)
    platform = Tariff(percent=platform_percent, fixed=platform_fixed)
    fees = compute_fees(gross, currency, provider, platform)
    assert fees.provider_fee + fees.platform_fee + fees.net == gross
    assert fees.provider_fee >= 0 and fees.platform_fee >= 0 and fees.net >= 0
    quantum = Decimal(1).scaleb(-exponent)
    for part in (fees.provider_fee, fees.platform_fee, fees.net):
        assert part == part.quantize(quantum)  # whole minor units, no float dust


# ----- revenue ---------------------------------------------------------------------------------
def fig(merchant: str, currency: str, status: str, amount: str, at: datetime,
        provider: str | None = "0", platform: str | None = "0") -> PaymentFigures:  # fmt: skip
    return PaymentFigures(
        merchant_id=merchant,
        currency=currency,
        status=status,
        amount=Decimal(amount),
        provider_fee=None if provider is None else Decimal(provider),
        platform_fee=None if platform is None else Decimal(platform),
        created_at=at,
    )


def test_local_days_follow_the_currency() -> None:
    late_utc = datetime(2026, 3, 1, 22, 30, tzinfo=UTC)  # 01:30 in Nairobi, 00:30 in Kigali
    assert local_day("KES", late_utc) == date(2026, 3, 2)
    assert local_day("RWF", late_utc) == date(2026, 3, 2)
    assert local_day("EUR", late_utc) == date(2026, 3, 1)


def test_revenue_lines_on_a_known_dataset() -> None:
    d1 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    d2 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)  # already 2 March in Nairobi
    figures = [
        fig("mer_a", "KES", "succeeded", "1000.00", d1, "10.00", "21.00"),
        fig("mer_a", "KES", "succeeded", "500.00", d1, "5.00", "11.00"),
        fig("mer_a", "KES", "failed", "300.00", d1),
        fig("mer_a", "KES", "unknown", "200.00", d1),
        fig("mer_a", "KES", "succeeded", "100.00", d2, None, None),  # before fees existed
        fig("mer_a", "RWF", "succeeded", "1500", d1, "15", "30"),
        fig("mer_b", "KES", "failed", "50.00", d1),
        fig("mer_a", "KES", "succeeded", "999.00", datetime(2026, 2, 27, tzinfo=UTC), "1", "1"),
    ]
    refunds = [  # what succeeded refunds gave back, on their own day
        RefundFigures("mer_a", "KES", Decimal("150.00"), d2),
        RefundFigures("mer_a", "KES", Decimal("1.00"), datetime(2026, 3, 3, 12, tzinfo=UTC)),
    ]
    lines, totals = aggregate(figures, date(2026, 3, 1), date(2026, 3, 2), refunds)
    views = [line.view() for line in lines]
    assert views == [
        {
            "merchant_id": "mer_a", "currency": "KES", "day": "2026-03-01", "payments": 4,
            "succeeded": 2, "failed": 1, "open": 1, "success_rate": "0.6667",
            "gross": "1500.00", "provider_fees": "15.00", "platform_fees": "32.00",
            "refunds": 0, "refunded": "0.00", "net": "1453.00", "without_fees": 0,
        },
        {
            "merchant_id": "mer_a", "currency": "KES", "day": "2026-03-02", "payments": 1,
            "succeeded": 1, "failed": 0, "open": 0, "success_rate": "1.0000",
            "gross": "100.00", "provider_fees": "0.00", "platform_fees": "0.00",
            "refunds": 1, "refunded": "150.00", "net": "-50.00", "without_fees": 1,
        },
        {
            "merchant_id": "mer_a", "currency": "RWF", "day": "2026-03-01", "payments": 1,
            "succeeded": 1, "failed": 0, "open": 0, "success_rate": "1.0000",
            "gross": "1500", "provider_fees": "15", "platform_fees": "30", "refunds": 0,
            "refunded": "0", "net": "1455", "without_fees": 0,
        },
        {
            "merchant_id": "mer_b", "currency": "KES", "day": "2026-03-01", "payments": 1,
            "succeeded": 0, "failed": 1, "open": 0, "success_rate": "0.0000",
            "gross": "0.00", "provider_fees": "0.00", "platform_fees": "0.00", "refunds": 0,
            "refunded": "0.00", "net": "0.00", "without_fees": 0,
        },
    ]  # fmt: skip
    kes_total = totals[0].view()
    assert (kes_total["day"], kes_total["gross"], kes_total["net"], kes_total["payments"]) == (
        None, "1600.00", "1403.00", 5,
    )  # fmt: skip
    assert (kes_total["refunds"], kes_total["refunded"]) == (1, "150.00")  # 3 March: off range
    assert [t.view()["currency"] for t in totals] == ["KES", "RWF", "KES"]
