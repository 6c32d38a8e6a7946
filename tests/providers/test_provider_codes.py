"""The result-code catalogue (lipwa.domain.codes) and the provider host guards."""

from __future__ import annotations

import pytest

from lipwa.domain.codes import (
    FAILURE_CODES,
    CodeInfo,
    catalogue,
    momo_result,
    mpesa_b2c_result,
    mpesa_stk_result,
)
from lipwa.providers import momo, mpesa


@pytest.mark.parametrize(
    ("code", "state", "failure_code"),
    [
        (0, "succeeded", None),
        ("0", "succeeded", None),
        ("00000000", "succeeded", None),
        ("00", "succeeded", None),
        (0.0, "succeeded", None),
        (1, "failed", "insufficient_funds"),
        (1032, "failed", "payer_declined"),
        ("1032", "failed", "payer_declined"),
        (1037, "failed", "payer_unreachable"),
        (2001, "failed", "wrong_pin"),
        (1001, "failed", "subscriber_busy"),
        (1019, "failed", "expired"),
        (17, "failed", "duplicate_transaction"),
        (2, "failed", "limit_exceeded"),
        (3, "failed", "limit_exceeded"),
        (4, "failed", "limit_exceeded"),
        (8, "failed", "limit_exceeded"),
        (2028, "failed", "invalid_request"),
        ("SFC_IC0003", "failed", "invalid_request"),
        (" sfc_ic0003 ", "failed", "invalid_request"),
        (1025, "failed", "provider_error"),
        (9999, "failed", "provider_error"),
        (26, "failed", "provider_error"),
        (4999, "pending", None),
    ],
)
def test_stk_result_codes(code: object, state: str, failure_code: str | None) -> None:
    info = mpesa_stk_result(code)
    assert (info.provider, info.state, info.failure_code) == ("mpesa", state, failure_code)


@pytest.mark.parametrize("code", [123456, "XYZ", None, "", True, 1.5, {"a": 1}])
def test_unknown_stk_codes_fail_and_keep_the_raw_code(code: object) -> None:
    info = mpesa_stk_result(code)
    assert info.state == "failed"
    assert info.failure_code == "unknown_failure"
    if code not in (None, ""):
        assert info.code == str(code)


@pytest.mark.parametrize(
    ("code", "state", "failure_code"),
    [
        (0, "succeeded", None),
        ("1", "failed", "insufficient_funds"),
        (2040, "failed", "payer_not_found"),
        ("R000001", "failed", "duplicate_transaction"),
        ("R000002", "failed", "invalid_request"),
        (2001, "failed", "not_allowed"),
        ("SFC_IC0003", "failed", "payer_not_found"),
        (100000000, "pending", None),
        ("R999", "failed", "unknown_failure"),
    ],
)
def test_b2c_result_codes(code: object, state: str, failure_code: str | None) -> None:
    info = mpesa_b2c_result(code)
    assert (info.state, info.failure_code) == (state, failure_code)


@pytest.mark.parametrize(
    ("status", "reason", "state", "failure_code"),
    [
        ("PENDING", None, "pending", None),
        ("CREATED", None, "pending", None),
        ("SUCCESSFUL", None, "succeeded", None),
        ("successful", None, "succeeded", None),
        ("FAILED", "APPROVAL_REJECTED", "failed", "payer_declined"),
        ("FAILED", {"code": "APPROVAL_REJECTED", "message": "no"}, "failed", "payer_declined"),
        ("FAILED", "EXPIRED", "failed", "expired"),
        ("FAILED", "COULD_NOT_PERFORM_TRANSACTION", "failed", "expired"),
        ("FAILED", "PAYER_NOT_FOUND", "failed", "payer_not_found"),
        ("FAILED", {"code": "PAYEE_NOT_FOUND"}, "failed", "payer_not_found"),
        ("FAILED", "NOT_ENOUGH_FUNDS", "failed", "insufficient_funds"),
        ("FAILED", "INTERNAL_PROCESSING_ERROR", "failed", "provider_error"),
        ("FAILED", "SERVICE_UNAVAILABLE", "failed", "provider_unavailable"),
        ("FAILED", "PAYER_LIMIT_REACHED", "failed", "limit_exceeded"),
        ("FAILED", "NOT_ALLOWED", "failed", "not_allowed"),
        ("FAILED", "NOT_ALLOWED_TARGET_ENVIRONMENT", "failed", "not_allowed"),
        ("FAILED", "PAYEE_NOT_ALLOWED_TO_RECEIVE", "failed", "not_allowed"),
        ("FAILED", "INVALID_CURRENCY", "failed", "invalid_request"),
        ("FAILED", "INVALID_CALLBACK_URL_HOST", "failed", "invalid_request"),
        ("FAILED", "TRANSACTION_CANCELED", "failed", "payer_declined"),
        ("FAILED", "BRAND_NEW_REASON", "failed", "unknown_failure"),
        ("FAILED", None, "failed", "unknown_failure"),
        ("FAILED", {"message": "no code"}, "failed", "unknown_failure"),
        ("FAILED", "ONGOING", "failed", "unknown_failure"),
        ("REJECTED", None, "pending", None),  # unknown status: never settled
        ("", None, "pending", None),
    ],
)
def test_momo_results(status: str, reason: object, state: str, failure_code: str | None) -> None:
    info = momo_result(status, reason)
    assert (info.provider, info.state, info.failure_code) == ("momo", state, failure_code)


def test_momo_unknown_reason_keeps_the_raw_code() -> None:
    assert momo_result("FAILED", {"code": "BRAND_NEW"}).code == "BRAND_NEW"


def test_internal_processing_error_points_at_insufficient_funds() -> None:
    assert "insufficient funds" in momo_result("FAILED", "INTERNAL_PROCESSING_ERROR").explanation


def test_catalogue_is_consistent() -> None:
    entries = catalogue()
    assert len(entries) > 60
    seen: set[tuple[str, str, str]] = set()
    for info in entries:
        assert isinstance(info, CodeInfo)
        assert info.provider in {"mpesa", "momo"}
        assert info.state in {"succeeded", "failed", "pending"}
        assert (info.failure_code is None) == (info.state != "failed"), info
        assert info.failure_code is None or info.failure_code in FAILURE_CODES
        assert info.explanation.strip()
        key = (info.provider, info.api, info.code)
        assert key not in seen
        seen.add(key)
    assert {"stk", "b2c", "status", "reason"} == {info.api for info in entries}


# ----- host guards ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "production"),
    [
        (mpesa.PRODUCTION_BASE_URL, True),
        ("https://API.safaricom.co.ke/oauth/v1/generate", True),
        ("api.safaricom.co.ke", True),
        ("https://api.safaricom.co.ke.:443", True),
        # Spellings httpx connects to as the production host: never "not production".
        ("https://api\u3002safaricom\u3002co\u3002ke", True),
        ("https://api\uff0esafaricom\uff0eco\uff0eke", True),
        (mpesa.SANDBOX_BASE_URL, False),
        ("http://127.0.0.1:8900", False),
        ("https://safaricom.co.ke.evil.example", False),
        ("not a url at all", False),
    ],
)
def test_mpesa_production_hosts(url: str, production: bool) -> None:
    assert mpesa.is_production_host(url) is production


@pytest.mark.parametrize(
    ("url", "production"),
    [
        (momo.PRODUCTION_BASE_URL, True),
        (momo.RWANDA_PRODUCTION_BASE_URL, True),
        (momo.MOMO_AFRICA_BASE_URL, True),
        ("https://ericssonbasicapi2.azure-api.net", True),
        ("proxy.momoapi.mtn.co.ug", True),
        ("https://proxy.momoapi.mtn\uff0eco\uff0erw", True),
        (momo.SANDBOX_BASE_URL, False),
        ("http://localhost:8900", False),
        ("https://mtn.example.com", False),
        ("https://momodeveloper.mtn.com", True),  # the portal, not the sandbox API
        ("https://www.mtn.cm", True),
        ("", False),
    ],
)
def test_momo_production_hosts(url: str, production: bool) -> None:
    assert momo.is_production_host(url) is production


def test_sandbox_hosts() -> None:
    assert mpesa.is_sandbox_host(mpesa.SANDBOX_BASE_URL)
    assert mpesa.is_sandbox_host("https://SANDBOX.safaricom.co.ke./mpesa")
    assert not mpesa.is_sandbox_host(mpesa.PRODUCTION_BASE_URL)
    assert momo.is_sandbox_host(momo.SANDBOX_BASE_URL)
    assert not momo.is_sandbox_host(momo.PRODUCTION_BASE_URL)
    assert not momo.is_sandbox_host("http://127.0.0.1:8900")
