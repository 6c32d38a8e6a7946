"""Parse the STK callback Daraja posts to CallBackURL (daraja.md §2.2, §5.4).

Tolerant by design: items are looked up by ``Name``; ``Balance`` may lack ``Value``; codes
may be numbers or strings; ``Amount`` is a float-looking number; ``TransactionDate`` and
``PhoneNumber`` are numbers. Anything unexpected yields ``None`` or a missing field, never
an exception.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lipwa.domain.codes import SUCCEEDED, mpesa_stk_result
from lipwa.providers.base import ProviderReport, ReportState
from lipwa.providers.mpesa.wire import KENYA_TZ

# Shared with momo.wire; results.py imports these two names from here.
from lipwa.providers.values import decimal as _decimal
from lipwa.providers.values import text as _text

_STATES = {
    "succeeded": ReportState.SUCCEEDED,
    "failed": ReportState.FAILED,
    "pending": ReportState.PENDING,
}


def report_state(state: str) -> ReportState:
    return _STATES.get(state, ReportState.PENDING)


def parse_stk_callback(body: object) -> tuple[str, ProviderReport] | None:
    """``(CheckoutRequestID, report)`` for an STK callback; ``None`` if ``body`` is not one.

    Never marks paid unless ``ResultCode`` is 0 **and** an ``MpesaReceiptNumber`` is present.
    Decision: a 0 without a receipt is reported as PENDING (raw code "0" kept), so the
    service keeps the payment open and confirms it with an STK query instead of settling it
    on an unauthenticated, incomplete callback.
    """
    callback = _dig(body, "Body", "stkCallback")
    if callback is None:
        return None
    checkout_id = _text(callback.get("CheckoutRequestID"))
    code = callback.get("ResultCode")
    if not checkout_id or not _is_code(code):
        return None
    info = mpesa_stk_result(code)
    items = _items(callback.get("CallbackMetadata"))
    receipt = _text(items.get("MpesaReceiptNumber"))
    description = callback.get("ResultDesc")
    message = description if isinstance(description, str) else None
    state = report_state(info.state)
    if info.state == SUCCEEDED and not receipt:
        state = ReportState.PENDING
        message = f"{message or 'Success'} (no MpesaReceiptNumber: confirm by query)"
    return checkout_id, ProviderReport(
        state=state,
        provider_ref=checkout_id,
        raw_code=info.code,
        raw_message=message,
        failure_code=info.failure_code if state is ReportState.FAILED else None,
        receipt=receipt,
        amount=_decimal(items.get("Amount")),
        phone=_phone(items.get("PhoneNumber")),
        completed_at=_kenya_time(items.get("TransactionDate")),
    )


def _dig(value: object, *keys: str) -> dict[str, Any] | None:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, dict) else None


def _is_code(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return isinstance(value, str) and bool(value.strip())


def _items(metadata: object) -> dict[str, Any]:
    """``CallbackMetadata.Item`` as ``{Name: Value}``; entries without ``Value`` are skipped."""
    raw = metadata.get("Item") if isinstance(metadata, dict) else None
    entries = [raw] if isinstance(raw, dict) else raw if isinstance(raw, list) else []
    items: dict[str, Any] = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("Name"), str) and "Value" in entry:
            items.setdefault(entry["Name"], entry["Value"])
    return items


def _phone(value: object) -> str | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = _text(value)
    if text is None:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    return digits or None


def _kenya_time(value: object) -> datetime | None:
    """``YYYYMMDDHHmmss`` (number or string), Kenya local time, as an aware datetime."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = _text(value)
    if text is None or len(text) != 14 or not text.isdigit():
        return None
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=KENYA_TZ)
    except ValueError:
        return None
