"""The public webhook signature helper: what a merchant runs to trust a webhook."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lipwa.webhooks import WebhookVerificationError, sign, verify, verify_signature

SECRET = "whsec_test_secret_one"
OTHER = "whsec_test_secret_two"
NOW = 1_732_245_600
BODY = json.dumps({"id": "evt_1", "object": "event", "type": "payment.succeeded"}).encode()


def test_a_signed_body_verifies_and_returns_the_event() -> None:
    header = sign(BODY, SECRET, NOW)
    assert header.startswith(f"t={NOW},v1=")
    assert verify(BODY, header, SECRET, now=NOW)["id"] == "evt_1"


def test_known_vector_for_other_languages() -> None:
    # printf '1732245600.{}' | openssl dgst -sha256 -hmac 'whsec_test_secret_one'
    expected = "1e7b04547d3f02b20a6aab96da64662ce30a4f2704fc8684a42b1a386fd905e4"
    assert sign(b"{}", SECRET, NOW) == f"t=1732245600,v1={expected}"


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(WebhookVerificationError, match="wrong secret"):
        verify(BODY, sign(BODY, OTHER, NOW), SECRET, now=NOW)


def test_changed_body_is_rejected() -> None:
    header = sign(BODY, SECRET, NOW)
    with pytest.raises(WebhookVerificationError, match="body changed"):
        verify(BODY.replace(b"succeeded", b"failed"), header, SECRET, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, 86_400])
def test_timestamp_outside_tolerance_is_rejected(skew: int) -> None:
    header = sign(BODY, SECRET, NOW)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(BODY, header, SECRET, now=NOW + skew)


def test_timestamp_within_tolerance_is_accepted() -> None:
    header = sign(BODY, SECRET, NOW)
    verify(BODY, header, SECRET, now=NOW + 299)
    verify(BODY, header, SECRET, tolerance_s=3600, now=NOW + 3000)


def test_the_timestamp_is_signed_too() -> None:
    signature = sign(BODY, SECRET, NOW).split(",", 1)[1]
    with pytest.raises(WebhookVerificationError, match="wrong secret"):
        verify(BODY, f"t={NOW + 100},{signature}", SECRET, now=NOW + 100)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("garbage", "malformed"),
        ("v1=abc", "exactly one t="),
        ("t=abc,v1=abc", "exactly one t="),
        (f"t={NOW},t={NOW},v1=abc", "exactly one t="),
        ("t=\u00b2,v1=abc", "exactly one t="),  # a digit to str.isdigit, not to int()
        ("t=" + "9" * 5000 + ",v1=abc", "exactly one t="),  # too long for int()
        (f"t={NOW}", "no v1 signature"),
        (f"t={NOW},v0=abc", "no v1 signature"),
    ],
)
def test_missing_or_malformed_header_is_rejected(header: str | None, reason: str) -> None:
    with pytest.raises(WebhookVerificationError, match=reason):
        verify(BODY, header, SECRET, now=NOW)


def test_during_rotation_either_secret_verifies() -> None:
    header = sign(BODY, [OTHER, SECRET], NOW)
    assert header.count("v1=") == 2
    assert verify(BODY, header, SECRET, now=NOW)["id"] == "evt_1"
    assert verify(BODY, header, OTHER, now=NOW)["id"] == "evt_1"
    with pytest.raises(WebhookVerificationError):
        verify(BODY, header, "whsec_neither", now=NOW)


def test_unknown_schemes_are_ignored() -> None:
    header = sign(BODY, SECRET, NOW) + ",v2=future"
    assert verify(BODY, header, SECRET, now=NOW)["object"] == "event"


def test_a_signed_body_that_is_not_a_json_object_is_rejected() -> None:
    with pytest.raises(WebhookVerificationError, match="not a JSON object"):
        verify(b"[1]", sign(b"[1]", SECRET, NOW), SECRET, now=NOW)
    with pytest.raises(WebhookVerificationError, match="not valid JSON"):
        verify(b"{", sign(b"{", SECRET, NOW), SECRET, now=NOW)


secrets_st = st.text(min_size=1, max_size=64)
timestamps = st.integers(min_value=0, max_value=2**40)


@given(body=st.binary(max_size=2048), secret=secrets_st, timestamp=timestamps)
def test_any_body_and_secret_round_trip(body: bytes, secret: str, timestamp: int) -> None:
    assert verify_signature(body, sign(body, secret, timestamp), secret, now=timestamp) == timestamp


@given(
    event=st.dictionaries(st.text(max_size=10), st.text(max_size=20) | st.integers(), max_size=5),
    secret=secrets_st,
)
def test_any_event_round_trips(event: dict[str, object], secret: str) -> None:
    body = json.dumps(event).encode()
    assert verify(body, sign(body, secret, NOW), secret, now=NOW) == event


@given(body=st.binary(min_size=1, max_size=512), data=st.data())
def test_any_single_byte_change_fails(body: bytes, data: st.DataObject) -> None:
    header = sign(body, SECRET, NOW)
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    delta = data.draw(st.integers(min_value=1, max_value=255))
    changed = bytearray(body)
    changed[index] = (changed[index] + delta) % 256
    with pytest.raises(WebhookVerificationError):
        verify_signature(bytes(changed), header, SECRET, now=NOW)


@given(secret=secrets_st, other=secrets_st)
def test_any_other_secret_fails(secret: str, other: str) -> None:
    if secret == other:
        return
    with pytest.raises(WebhookVerificationError):
        verify_signature(BODY, sign(BODY, secret, NOW), other, now=NOW)
