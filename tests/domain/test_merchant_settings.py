"""Merchant settings are checked when the merchant is made: each unusable one is refused
with the setting named, every usable one passes."""

from __future__ import annotations

from typing import Any

import pytest

from lipwa.domain.errors import DomainError
from lipwa.domain.merchant_settings import check_merchant_settings

USABLE: dict[str, Any] = {
    "limits": {
        "KES": {"minimum": "10", "maximum": "70000", "daily_per_payer": "150000"},
        "RWF": {"daily_per_payer": None},
    },
    "platform_fees": {"mpesa": {"percent": "2.5", "fixed": "0"}},
    "provider_fees": {"momo": {"bands": [["0", "1000", "5"], ["1000", None, "10"]]}},
    "rate_limits": {"prompts": "20/minute", "payer_lock_s": 60},
    "duplicate_window_s": 300,
    "payout_approval_threshold": {"KES": "50000", "RWF": 0, "UGX": None},
}


def test_usable_settings_pass() -> None:
    check_merchant_settings({})
    check_merchant_settings(USABLE)


@pytest.mark.parametrize(
    ("settings", "code", "param"),
    [
        ({"limits": {"KES": "10"}}, "invalid_amount_limits", "limits.KES"),
        ({"limits": ["KES"]}, "invalid_amount_limits", "limits"),
        ({"limits": {"USD": {"maximum": "10"}}}, "invalid_amount_limits", "limits.USD"),
        (
            {"limits": {"KES": {"whole_units": False}}},
            "invalid_amount_limits",
            "limits.KES.whole_units",
        ),
        (
            {"limits": {"KES": {"daily_per_payer": "lots"}}},
            "invalid_amount_limits",
            "limits.KES.daily_per_payer",
        ),
        ({"platform_fees": {"mpesa": {"percent": 2.5}}}, "invalid_fee_settings", None),
        ({"rate_limits": {"prompts": "often"}}, "invalid_rate_limit", "rate_limits.prompts"),
        ({"rate_limits": {"burst": 5}}, "invalid_rate_limit", "rate_limits"),
        ({"payout_approval_threshold": "50000"}, "invalid_approval_threshold", None),
        (
            {"payout_approval_threshold": {"KES": "50,000"}},
            "invalid_approval_threshold",
            "payout_approval_threshold.KES",
        ),
        (
            {"payout_approval_threshold": {"KES": True}},
            "invalid_approval_threshold",
            "payout_approval_threshold.KES",
        ),
        (
            {"payout_approval_threshold": {"KES": "-1"}},
            "invalid_approval_threshold",
            "payout_approval_threshold.KES",
        ),
        # A key no payout's currency can match would switch approval off unseen.
        *(
            (
                {"payout_approval_threshold": {key: "50000"}},
                "invalid_approval_threshold",
                f"payout_approval_threshold.{key}",
            )
            for key in ("kes", "KSH", " KES")
        ),
    ],
)
def test_unusable_settings_are_refused_with_the_setting_named(
    settings: dict[str, Any], code: str, param: str | None
) -> None:
    with pytest.raises(DomainError) as caught:
        check_merchant_settings(settings)
    assert caught.value.code == code
    assert caught.value.param is not None
    if param is not None:
        assert caught.value.param == param
    else:
        assert caught.value.param.split(".")[0] in settings
