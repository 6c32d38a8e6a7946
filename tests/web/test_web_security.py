"""Sessions expire (30 min idle, 8 h at most), CSRF tokens bind to their cookie, checkout
tokens cannot be forged; charts escape what they draw. No browser, no server."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response

from lipwa.config import Settings
from lipwa.web import charts, i18n
from lipwa.web.security import CSRF_COOKIE, IDLE_S, MAX_S, SESSION_COOKIE, Session, WebSecurity


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "encryption_keys": SecretStr("v1:" + "A" * 43 + "="),
        "admin_token": SecretStr("admin-secret-long-enough"),
        "public_url": "https://pay.example.com",
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def _request(cookies: dict[str, str]) -> Request:
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return Request({"type": "http", "headers": [(b"cookie", header.encode())]})


def _cookie(response: Response) -> tuple[str, str]:
    raw = response.headers["set-cookie"]
    name, value = raw.split(";")[0].split("=", 1)
    return name, value


def _signed(web: WebSecurity, session: Session) -> tuple[str, str]:
    response = Response()
    web.write_session(response, session)
    return _cookie(response)


def test_session_cookie_attributes() -> None:
    web = WebSecurity(_settings())
    response = Response()
    web.write_session(response, Session("admin", time.time(), admin_fp=web.admin_fingerprint()))
    raw = response.headers["set-cookie"]
    assert "HttpOnly" in raw and "SameSite=lax" in raw and "Secure" in raw
    assert f"Max-Age={IDLE_S}" in raw
    assert "admin-secret" not in raw


def test_idle_sessions_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    web = WebSecurity(_settings())
    now = time.time()
    name, value = _signed(web, Session("admin", now, admin_fp=web.admin_fingerprint()))
    assert web.read_session(_request({name: value})) is not None
    monkeypatch.setattr(time, "time", lambda: now + IDLE_S + 5)
    assert web.read_session(_request({name: value})) is None


def test_sessions_end_after_eight_hours_even_when_active(monkeypatch: pytest.MonkeyPatch) -> None:
    web = WebSecurity(_settings())
    signed_in = time.time() - MAX_S - 60  # signed in long ago, re-signed a minute ago
    name, value = _signed(web, Session("merchant", signed_in, "mer_1", "test", "key_1"))
    assert web.read_session(_request({name: value})) is None


def test_rotating_the_admin_token_ends_admin_sessions() -> None:
    web = WebSecurity(_settings())
    name, value = _signed(web, Session("admin", time.time(), admin_fp=web.admin_fingerprint()))
    rotated = WebSecurity(_settings(admin_token=SecretStr("new-admin-token-16")))
    assert rotated.read_session(_request({name: value})) is None
    other_ring = WebSecurity(_settings(encryption_keys=SecretStr("v2:" + "B" * 43 + "=")))
    assert other_ring.read_session(_request({SESSION_COOKIE: value})) is None


def test_csrf_token_binds_to_its_cookie() -> None:
    web = WebSecurity(_settings())
    nonce, new = web.csrf_nonce(_request({}))
    assert new
    token = web.csrf_token(nonce)
    assert web.csrf_ok(_request({CSRF_COOKIE: nonce}), token)
    tampered = token[:-1] + ("1" if token.endswith("0") else "0")  # always a different token
    assert not web.csrf_ok(_request({CSRF_COOKIE: nonce}), tampered)
    assert not web.csrf_ok(_request({CSRF_COOKIE: "x" * 32}), token)  # planted cookie
    assert not web.csrf_ok(_request({}), token)
    assert not web.csrf_ok(_request({CSRF_COOKIE: nonce}), "é" * len(token))  # no TypeError


def test_checkout_tokens_cannot_be_forged() -> None:
    web = WebSecurity(_settings())
    token = web.payment_token("pay_123")
    assert web.payment_id(token) == "pay_123"
    assert web.payment_id("pay_123") is None
    # A middle character of the signature: the last one may carry only base64 padding bits.
    forged = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    assert web.payment_id(forged) is None


OLD_KEY = "v1:" + "A" * 43 + "="
NEW_KEY = "v2:" + "B" * 43 + "="


def test_adding_a_vault_key_keeps_checkout_links_sessions_and_forms_working() -> None:
    """README's key rotation puts a new key first and restarts: nothing already issued breaks."""
    before = WebSecurity(_settings(encryption_keys=SecretStr(OLD_KEY)))
    token = before.payment_token("pay_123")  # in a payer's progress page and receipt URL
    admin = _signed(before, Session("admin", time.time(), admin_fp=before.admin_fingerprint()))[1]
    merchant = _signed(before, Session("merchant", time.time(), "mer_1", "test", "key_1"))[1]
    nonce = "n" * 32
    form_field = before.csrf_token(nonce)  # in a page rendered before the restart

    after = WebSecurity(_settings(encryption_keys=SecretStr(f"{NEW_KEY},{OLD_KEY}")))
    assert after.payment_id(token) == "pay_123"
    assert after.read_session(_request({SESSION_COOKIE: admin})) is not None
    assert after.read_session(_request({SESSION_COOKIE: merchant})) is not None
    assert after.csrf_ok(_request({CSRF_COOKIE: nonce}), form_field)
    # New ones are signed with the new key: dropping the old key later keeps them.
    only_new = WebSecurity(_settings(encryption_keys=SecretStr(NEW_KEY)))
    assert only_new.payment_id(after.payment_token("pay_9")) == "pay_9"
    assert only_new.payment_id(token) is None


def test_processes_agree_whatever_the_spacing_of_the_key_ring() -> None:
    spaced = WebSecurity(_settings(encryption_keys=SecretStr(f" {NEW_KEY}, {OLD_KEY} ")))
    tight = WebSecurity(_settings(encryption_keys=SecretStr(f"{NEW_KEY},{OLD_KEY}")))
    assert spaced.payment_token("pay_1") == tight.payment_token("pay_1")
    assert spaced.csrf_token("n" * 32) == tight.csrf_token("n" * 32)


def test_charts_escape_labels() -> None:
    svg = charts.hbar_chart("<b>codes</b>", [("<script>x</script>", 3.0)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    line = charts.line_chart("t", ["a", "b"], {"mpesa": [1.0, None]}, y_max=100, unit="%")
    assert line.startswith("<svg") and 'role="img"' in line


def test_every_payer_text_is_translated() -> None:
    for table in (i18n.TEXT, i18n.OUTCOMES):
        for key, entry in table.items():
            assert set(entry) == set(i18n.LANGUAGES), key
    assert i18n.choose(None, None, "sw-KE,sw;q=0.9,en;q=0.5") == "sw"
    assert i18n.choose("fr", "sw", "en") == "fr"
