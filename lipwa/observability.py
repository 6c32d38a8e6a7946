"""Structured logs (structlog) with secrets redacted and phone numbers masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

SECRET_KEYS = re.compile(
    r"(secret|passkey|password|token|api_key|apikey|authorization|credential|"
    r"subscription|consumer_key|signature)",
    re.IGNORECASE,
)
# Long digit runs that look like MSISDNs with a country code (254…, 250…, 256…, 467…).
PHONE = re.compile(r"\b(2547|2541|2507|2567|4673)(\d{3,5})(\d{3})\b")
# The same numbers in national format (07…, 01… in Kenya; 078/079 in Rwanda; 077/078 in Uganda).
LOCAL_PHONE = re.compile(r"\b(07|01)(\d{5})(\d{3})\b")
# Callback URL tokens: /callbacks/<token>/...
CALLBACK_TOKEN = re.compile(r"(/callbacks/)([A-Za-z0-9_\-]{8,})")
# Secrets that travel inside text: auth headers, Lipwa API keys, webhook signing secrets.
INLINE_SECRET = re.compile(
    r"\b(Bearer\s+|Basic\s+)[A-Za-z0-9._~+/=\-]{8,}|\b(lw_live_|lw_test_|whsec_)[A-Za-z0-9_\-]{4,}"
)
REDACTED = "[REDACTED]"


def mask_text(text: str) -> str:
    text = INLINE_SECRET.sub(lambda m: f"{m.group(1) or m.group(2)}{REDACTED}", text)
    text = PHONE.sub(lambda m: f"{m.group(1)}{'*' * len(m.group(2))}{m.group(3)}", text)
    text = LOCAL_PHONE.sub(lambda m: f"{m.group(1)}{'*' * len(m.group(2))}{m.group(3)}", text)
    return CALLBACK_TOKEN.sub(lambda m: f"{m.group(1)}{m.group(2)[:4]}…", text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 10**8:
        masked = mask_text(str(value))  # a phone number given as an int
        return value if masked == str(value) else masked
    if isinstance(value, dict):
        return {
            k: (REDACTED if SECRET_KEYS.search(str(k)) else _scrub(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if SECRET_KEYS.search(key):
            event[key] = REDACTED
        else:
            event[key] = _scrub(event[key])
    return event


class _MaskingFilter(logging.Filter):
    """Masks plain stdlib records (uvicorn, httpx): the message and any traceback."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_text(record.getMessage())
        record.args = ()
        # Traceback and stack are formatted here, masked and kept as exc_text, which the
        # handler's formatter prints as it is (it only formats exc_info and stack_info).
        parts = [record.stack_info] if record.stack_info else []
        if record.exc_info:
            parts.insert(0, self._formatter.formatException(record.exc_info))
        elif record.exc_text:
            parts.insert(0, record.exc_text)
        record.exc_text = mask_text("\n".join(parts)) if parts else None
        record.exc_info = record.stack_info = None
        return True


def _stdlib_fields(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A stdlib record's logger name and (already masked) traceback, as JSON fields."""
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger"] = record.name
        if record.exc_text:
            event_dict["exception"] = record.exc_text
    return event_dict


def configure_logging(
    level: str = "INFO", json_output: bool = True, stream: TextIO | None = None
) -> None:
    """Configure structlog and the stdlib root logger to write to ``stream`` (stderr)."""
    stream = stream or sys.stderr
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Tracebacks first, so their text is masked too.
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_lipwa", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream)
    handler._lipwa = True  # type: ignore[attr-defined]
    handler.addFilter(_MaskingFilter())
    if json_output:  # library records (uvicorn, alembic, sqlalchemy) as JSON lines too
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[
                    structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    _stdlib_fields,
                    redact,
                ],
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; keep it at WARNING.
    logging.getLogger("httpx").setLevel(logging.WARNING)
