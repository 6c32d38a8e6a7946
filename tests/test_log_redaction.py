"""Structured logs never carry secrets or whole phone numbers, whatever shape they come in."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from lipwa.observability import configure_logging


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """Put the logging set-up back: the gateway tests log to their own file."""
    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def stream() -> io.StringIO:
    out = io.StringIO()
    configure_logging("INFO", json_output=True, stream=out)
    return out


SECRETS = [
    "cs-very-secret-1",
    "pk-passkey-2",
    "mo-api-key-3",
    "sub-key-4",
    "init-pass-5",
    "eyJhbGciOi.token-6",
    "whsec_signingsecret7",
    "lw_live_apikeyvalue8",
]


def test_nested_secrets_and_phones_are_scrubbed(stream: io.StringIO) -> None:
    structlog.get_logger("t").info(
        "provider_call",
        phone="254712345149",
        msisdn=250788123456,  # an int, as some payloads carry it
        request={
            "consumer_secret": SECRETS[0],
            "body": {"Password": SECRETS[1], "PhoneNumber": "254712345149", "Amount": 10},
            "accounts": [{"api_key": SECRETS[2], "subscription_keys": {"collection": SECRETS[3]}}],
            "initiator": ("name", {"initiator_password": SECRETS[4]}),
        },
        headers={"Authorization": f"Bearer {SECRETS[5]}"},
        note=f"payer 0712345149 signed with {SECRETS[6]} using {SECRETS[7]}",
        url="https://pay.example.com/callbacks/AbCdEfGhIjKlMnOp/stk/pay_1",
    )
    line = stream.getvalue().strip().splitlines()[-1]
    for secret in SECRETS:
        assert secret not in line
    for phone in ("254712345149", "250788123456", "0712345149", "712345149"):
        assert phone not in line
    event: dict[str, Any] = json.loads(line)
    assert event["phone"] == "2547*****149"
    assert event["msisdn"] == "2507*****456"
    assert event["request"]["consumer_secret"] == "[REDACTED]"
    assert event["request"]["body"] == {
        "Password": "[REDACTED]",
        "PhoneNumber": "2547*****149",
        "Amount": 10,
    }
    assert event["request"]["accounts"][0]["subscription_keys"] == "[REDACTED]"
    assert event["headers"]["Authorization"] == "[REDACTED]"
    assert "payer 07*****149" in event["note"]
    assert "whsec_[REDACTED]" in event["note"] and "lw_live_[REDACTED]" in event["note"]
    assert event["url"].endswith("/callbacks/AbCd…/stk/pay_1")


def test_exceptions_are_masked_too(stream: io.StringIO) -> None:
    try:
        raise RuntimeError("payment for 254712345149 failed with Bearer abcdefghijkl")
    except RuntimeError:
        structlog.get_logger("t").exception("boom")
    line = stream.getvalue().strip().splitlines()[-1]
    assert "254712345149" not in line and "abcdefghijkl" not in line
    assert "2547*****149" in json.loads(line)["exception"]


def test_stdlib_records_are_masked(stream: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").warning(
        "POST /callbacks/AbCdEfGhIjKlMnOp/stk/x from %s", "254712345149"
    )
    text = stream.getvalue()
    assert "AbCdEfGhIjKlMnOp" not in text and "254712345149" not in text


def test_library_records_are_json_lines_like_lipwas_own(
    stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log shipper reads one format: uvicorn's and alembic's lines are JSON objects too."""
    # As `lipwa serve` leaves them (log_config=None): uvicorn's records reach the root handler.
    for name in ("uvicorn", "uvicorn.error"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
    monkeypatch.setattr(logging.getLogger("uvicorn.error"), "level", logging.INFO)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    started, failed = lines
    assert (started["event"], started["level"], started["logger"]) == (
        "Started server process [42]", "info", "uvicorn.error",
    )  # fmt: skip
    assert started["timestamp"].endswith("Z")
    assert failed["level"] == "error" and "ValueError: bad" in failed["exception"]


def test_stdlib_tracebacks_are_masked_like_messages(stream: io.StringIO) -> None:
    key = "lw_live_" + "Zx9" * 10
    try:
        raise RuntimeError(f"refused: Authorization: Bearer {key} for 254712345678")
    except RuntimeError:
        # What asyncio does with a task's exception that nobody retrieved.
        logging.getLogger("asyncio").exception(f"Task exception was never retrieved {key}")
    logging.getLogger("sqlalchemy.pool").warning("here, for 254712345678", stack_info=True)
    text = stream.getvalue()
    assert "Task exception was never retrieved lw_live_[REDACTED]" in text
    assert "RuntimeError: refused: Authorization: Bearer [REDACTED]" in text
    assert "Stack (most recent call last)" in text
    assert key not in text and "254712345678" not in text


def test_serve_turns_the_access_log_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn's access log would print raw callback URLs (their tokens): `serve` disables it."""
    import uvicorn

    from lipwa.cli import app
    from lipwa.vault import generate_key_text

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    env = {
        "LIPWA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        "LIPWA_ENCRYPTION_KEYS": generate_key_text("v1"),
    }
    result = CliRunner().invoke(app, ["serve", "--workers", "1"], env=env)
    assert result.exit_code == 0, result.output
    assert seen["access_log"] is False
    # and no logging config of uvicorn's own: its loggers reach the masked root handler
    assert seen["log_config"] is None


def test_an_api_process_nobody_set_logging_up_for_logs_masked_json() -> None:
    """`lipwa serve --workers N` builds the app in new processes: they log as configured."""
    import subprocess
    import sys

    from lipwa.vault import generate_key_text

    code = (
        "import structlog\n"
        "from lipwa.api.app import create_app\n"
        "create_app()\n"
        "structlog.get_logger('t').info('paid', phone='254712345678', consumer_secret='cs-x')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"LIPWA_ENCRYPTION_KEYS": generate_key_text("v1"), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (line,) = [json.loads(x) for x in done.stderr.splitlines() if '"paid"' in x]
    assert line["event"] == "paid" and line["consumer_secret"] == "[REDACTED]"
    assert "254712345678" not in done.stderr
