"""Pure rules behind the guards: daily totals per payer, rollout buckets, flag keys, the
merchant's guard policy and the operator's phone-prefix table."""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lipwa.domain.errors import DomainError
from lipwa.domain.flags import in_rollout, parse_flag_key, rollout_bucket
from lipwa.domain.money import DEFAULT_RULES, rule_for
from lipwa.domain.payer_limits import (
    DAILY_PER_PAYER,
    DAY_ZONES,
    check_daily_total,
    daily_limit_for,
    day_start,
)
from lipwa.domain.phone_prefixes import parse_prefix_overrides
from lipwa.domain.phones import Network, normalise_phone
from lipwa.domain.policy import GuardPolicy, policy_for

CURRENCIES = ["KES", "RWF", "UGX", "EUR"]
whole = st.integers(min_value=1, max_value=10**9).map(Decimal)


def error_of(fn: object, *args: object, **kwargs: object) -> DomainError:
    with pytest.raises(DomainError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    return info.value


# ----- daily total per payer --------------------------------------------------------------------
def test_daily_defaults_and_overrides() -> None:
    assert daily_limit_for("KES") == Decimal(150_000)
    assert daily_limit_for("RWF") == Decimal(2_000_000)
    assert daily_limit_for("UGX") == Decimal(10_000_000)
    assert daily_limit_for("EUR") is None  # sandbox: no default
    assert daily_limit_for("KES", {"KES": {"daily_per_payer": "5000"}}) == Decimal(5000)
    assert daily_limit_for("RWF", {"RWF": {"daily_per_payer": 7000}}) == Decimal(7000)
    assert daily_limit_for("KES", {"KES": {"daily_per_payer": None}}) is None
    assert daily_limit_for("KES", {"RWF": {"daily_per_payer": "1"}}) == Decimal(150_000)
    for bad in ("-1", "0", "1.5x", 1.5, True, "10.001"):
        error = error_of(daily_limit_for, "KES", {"KES": {"daily_per_payer": bad}})
        assert (error.code, error.param) == ("invalid_amount_limits", "limits.KES.daily_per_payer")


@given(
    key=st.sampled_from(sorted(DEFAULT_RULES)),
    daily=st.integers(1, 10**8),
    minimum=st.integers(1, 1000),
)
def test_daily_override_lives_beside_the_amount_rule(
    key: tuple[str, str], daily: int, minimum: int
) -> None:
    """rule_for reads the same limits object and ignores daily_per_payer."""
    provider, currency = key
    overrides = {currency: {"daily_per_payer": str(daily), "minimum": str(minimum)}}
    rule = rule_for(provider, currency, {currency: {"daily_per_payer": str(daily)}})
    assert rule == DEFAULT_RULES[key]
    assert daily_limit_for(currency, overrides) == Decimal(daily)
    if minimum <= DEFAULT_RULES[key].maximum:
        assert rule_for(provider, currency, overrides).minimum == minimum


@given(spent=whole | st.just(Decimal(0)), amount=whole, limit=whole | st.none())
def test_daily_total_is_refused_exactly_when_it_would_exceed(
    spent: Decimal, amount: Decimal, limit: Decimal | None
) -> None:
    if limit is None or spent + amount <= limit:
        check_daily_total(spent, amount, limit, "KES")
        return
    error = error_of(check_daily_total, spent, amount, limit, "KES")
    assert (error.code, error.param) == ("daily_limit_exceeded", "amount")
    assert "Africa/Nairobi" in error.message


@given(
    now=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    currency=st.sampled_from(CURRENCIES),
)
def test_day_starts_at_local_midnight(now: datetime, currency: str) -> None:
    start = day_start(now, currency)
    assert start.tzinfo is not None and start.utcoffset() == timedelta(0)
    assert start <= now < start + timedelta(days=1)
    zone = DAY_ZONES.get(currency, ("UTC", UTC))[1]
    local = start.astimezone(zone)
    assert (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0)


def test_nairobi_day_turns_at_21_utc() -> None:
    assert day_start(datetime(2025, 3, 1, 20, 59, tzinfo=UTC), "KES") == datetime(
        2025, 2, 28, 21, 0, tzinfo=UTC
    )
    assert day_start(datetime(2025, 3, 1, 21, 0, tzinfo=UTC), "KES") == datetime(
        2025, 3, 1, 21, 0, tzinfo=UTC
    )
    assert day_start(datetime(2025, 3, 1, 22, 0, tzinfo=UTC), "RWF") == datetime(
        2025, 3, 1, 22, 0, tzinfo=UTC
    )
    assert set(DAILY_PER_PAYER) <= set(DAY_ZONES)


# ----- rollout ----------------------------------------------------------------------------------
merchant_ids = st.uuids().map(lambda u: f"mer_{u.hex[:25]}")


@given(merchant_ids, st.sampled_from(["mpesa", "momo"]), st.integers(0, 100), st.integers(0, 100))
def test_rollout_is_stable_and_only_grows(merchant: str, provider: str, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert in_rollout(merchant, provider, low) == in_rollout(merchant, provider, low)
    assert 0 <= rollout_bucket(merchant, provider) < 100
    if in_rollout(merchant, provider, low):
        assert in_rollout(merchant, provider, high)  # 10% → 50% → 100% only adds merchants
    assert not in_rollout(merchant, provider, 0)
    assert in_rollout(merchant, provider, 100)


def test_rollout_bucket_is_pinned() -> None:
    """sha256 of "<merchant>:<provider>", not Python's salted hash(): every process and every
    release put a merchant in the same bucket (changing this reshuffles live rollouts)."""
    assert rollout_bucket("mer_example", "mpesa") == 39
    assert rollout_bucket("mer_example", "momo") == 6


_rng = random.Random(20250131)
SAMPLE = [
    f"mer_{''.join(_rng.choices(string.digits + string.ascii_lowercase, k=25))}"
    for _ in range(4000)
]  # ids shaped like lipwa.domain.ids.new_id("mer")


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 100), st.sampled_from(["mpesa", "momo"]))
def test_rollout_share_is_close_to_the_percentage(percentage: int, provider: str) -> None:
    share = sum(in_rollout(m, provider, percentage) for m in SAMPLE) / len(SAMPLE)
    assert abs(share - percentage / 100) < 0.03


# ----- flag keys --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key",
    [
        "gateway",
        "provider:mpesa",
        "provider:momo",
        "merchant:mer_abc",
        "account:acct_1",
        "rollout:mpesa",
        "rollout:momo",
    ],
)
def test_flag_keys_round_trip(key: str) -> None:
    assert str(parse_flag_key(key)) == key


@pytest.mark.parametrize(
    "key", ["", "Gateway", "provider:airtel", "rollout:", "merchant:", "merchant:a b", "x:y"]
)
def test_bad_flag_keys_are_refused(key: str) -> None:
    error = error_of(parse_flag_key, key)
    assert (error.code, error.param) == ("invalid_flag_key", "key")


# ----- guard policy -----------------------------------------------------------------------------
def test_policy_overrides_and_refusals() -> None:
    base = GuardPolicy()
    assert policy_for(base, {}) == base
    custom = policy_for(
        base,
        {
            "rate_limits": {"prompts": "3/minute", "payer_lock_s": 0, "same_amount_s": 30},
            "duplicate_window_s": 60,
        },
    )
    assert custom == GuardPolicy("3/minute", 0.0, 30.0, 60.0)
    for bad, param in [
        ({"rate_limits": {"prompts": "lots"}}, "rate_limits.prompts"),
        ({"rate_limits": {"prompts": "1/second;2/minute"}}, "rate_limits.prompts"),
        ({"rate_limits": {"payer_lock_s": -1}}, "rate_limits.payer_lock_s"),
        ({"rate_limits": {"payer_lock_s": True}}, "rate_limits.payer_lock_s"),
        ({"rate_limits": {"burst": 1}}, "rate_limits"),
        ({"rate_limits": "fast"}, "rate_limits"),
        ({"duplicate_window_s": "10m"}, "duplicate_window_s"),
    ]:
        error = error_of(policy_for, base, bad)
        assert (error.code, error.param) == ("invalid_rate_limit", param)


# ----- phone prefixes ---------------------------------------------------------------------------
def test_prefix_table_parses_and_corrects_the_network() -> None:
    table = parse_prefix_overrides(" 25473=safaricom, 25678=AIRTEL_UG ,")
    assert table == {"25473": Network.SAFARICOM, "25678": Network.AIRTEL_UG}
    assert normalise_phone("0733123456", "KE").network is Network.AIRTEL_KE
    assert normalise_phone("0733123456", "KE", table).network is Network.SAFARICOM
    assert parse_prefix_overrides("") == {}
    for bad in ("25473", "2547x=safaricom", "25473=orange", "=safaricom"):
        with pytest.raises(ValueError, match="phone prefix"):
            parse_prefix_overrides(bad)
