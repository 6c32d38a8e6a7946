"""Parse the ``Result`` envelope Daraja posts to ResultURL / QueueTimeOutURL of the secured APIs
(B2C, Transaction Status, Reversal; daraja.md §2.5, §2.6, §2.8, §5.4).

Tolerant by design: codes are numbers or strings (``0``, ``"0"``, ``"R000001"``);
``ResultParameters.ResultParameter`` and ``ReferenceData.ReferenceItem`` are a list or a single
object; entries may lack ``Value``; older payloads spell keys with spaces
(``"Originator Conversation ID"``). Anything unexpected yields ``None`` or a missing field,
never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lipwa.domain.codes import mpesa_b2c_result, normalise_mpesa_code
from lipwa.providers.base import ProviderReport, ReportState
from lipwa.providers.mpesa.callbacks import _decimal, _is_code, _phone, _text, report_state

NOT_FOUND_CODE = "R000002"  # "The OriginalTransactionID is invalid": no such transaction
ALREADY_REVERSED_CODE = "R000001"
DUPLICATE_DETECTED_CODE = "15"  # the answer to a repeat: says nothing of the first request
FAILED_STATUSES = {
    "declined": "rejected_by_provider",
    "cancelled": "rejected_by_provider",
    "expired": "expired",
}


@dataclass(frozen=True)
class ResultEnvelope:
    result_type: str
    code: str  # normalised: "0", "2001", "R000001"
    description: str | None
    originator_conversation_id: str | None
    conversation_id: str | None
    transaction_id: str | None
    parameters: dict[str, Any] = field(default_factory=dict)  # Key (no spaces) -> Value
    reference: dict[str, Any] = field(default_factory=dict)


def parse_result(body: object) -> ResultEnvelope | None:
    """The envelope in ``body``; None if it is not a ``{"Result": {... ResultCode ...}}``."""
    result = body.get("Result") if isinstance(body, dict) else None
    if not isinstance(result, dict) or not _is_code(result.get("ResultCode")):
        return None
    params = result.get("ResultParameters")
    references = result.get("ReferenceData")
    description = result.get("ResultDesc")
    return ResultEnvelope(
        result_type=normalise_mpesa_code(result.get("ResultType")),
        code=normalise_mpesa_code(result.get("ResultCode")),
        description=description if isinstance(description, str) else None,
        originator_conversation_id=_text(result.get("OriginatorConversationID")),
        conversation_id=_text(result.get("ConversationID")),
        transaction_id=_text(result.get("TransactionID")),
        parameters=_pairs(params.get("ResultParameter") if isinstance(params, dict) else None),
        reference=_pairs(references.get("ReferenceItem") if isinstance(references, dict) else None),
    )


def _pairs(raw: object) -> dict[str, Any]:
    entries = [raw] if isinstance(raw, dict) else raw if isinstance(raw, list) else []
    pairs: dict[str, Any] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Key"), str):
            continue
        if "Value" in entry and entry["Value"] is not None:
            pairs.setdefault(entry["Key"].replace(" ", ""), entry["Value"])
    return pairs


def _placeholder(transaction_id: str | None) -> bool:
    """Failed results carry ids like ``NLJ0000000``: not a receipt."""
    return transaction_id is None or transaction_id.endswith("0000000")


def b2c_report(envelope: ResultEnvelope) -> ProviderReport:
    """A B2C result. Paid only with ResultCode 0 **and** a receipt; 0 without one is PENDING
    (confirmed by a status query)."""
    info = mpesa_b2c_result(envelope.code)
    params = envelope.parameters
    receipt = _text(params.get("TransactionReceipt")) or (
        None if _placeholder(envelope.transaction_id) else envelope.transaction_id
    )
    state = report_state(info.state)
    message = envelope.description
    if state is ReportState.SUCCEEDED and not receipt:
        state = ReportState.PENDING
        message = f"{message or 'Success'} (no receipt: confirm by status query)"
    return ProviderReport(
        state=state,
        provider_ref=envelope.conversation_id,
        raw_code=info.code,
        raw_message=message,
        failure_code=info.failure_code if state is ReportState.FAILED else None,
        receipt=receipt if state is ReportState.SUCCEEDED else None,
        amount=_decimal(params.get("TransactionAmount")),
        phone=recipient_phone(envelope),
    )


def recipient_name(envelope: ResultEnvelope) -> str | None:
    """``ReceiverPartyPublicName`` "254705912645 - JOHN DOE" → "JOHN DOE"."""
    text = _text(envelope.parameters.get("ReceiverPartyPublicName"))
    if text is None:
        return None
    _, _, name = text.partition(" - ")
    return (name or text).strip()[:200] or None


def recipient_phone(envelope: ResultEnvelope) -> str | None:
    text = _text(envelope.parameters.get("ReceiverPartyPublicName"))
    return _phone(text.partition(" - ")[0]) if text else None


def status_report(envelope: ResultEnvelope) -> ProviderReport | None:
    """What a Transaction Status result says about the transaction it was asked about.

    ``R000002`` means the provider has no such transaction (NOT_FOUND). Any other non-zero code
    is about the query itself (bad initiator, throttling): None, ask again later.
    """
    if envelope.code == NOT_FOUND_CODE:
        return ProviderReport(
            ReportState.NOT_FOUND, raw_code=envelope.code, raw_message=envelope.description
        )
    if envelope.code != "0":
        return None
    params = envelope.parameters
    status = (_text(params.get("TransactionStatus")) or "").lower()
    receipt = _text(params.get("ReceiptNo"))
    if status == "completed" and receipt:
        state = ReportState.SUCCEEDED
    elif status in FAILED_STATUSES:
        state = ReportState.FAILED
    else:
        state = ReportState.PENDING
    return ProviderReport(
        state=state,
        provider_ref=_text(params.get("ConversationID")),
        raw_code=_text(params.get("TransactionStatus")) or envelope.code,
        raw_message=envelope.description,
        failure_code=FAILED_STATUSES.get(status) if state is ReportState.FAILED else None,
        receipt=receipt if state is ReportState.SUCCEEDED else None,
        amount=_decimal(params.get("Amount")),
    )


def status_subject(envelope: ResultEnvelope) -> str | None:
    """The OriginatorConversationID of the transaction a status result describes."""
    return _text(envelope.parameters.get("OriginatorConversationID"))


def reversal_report(envelope: ResultEnvelope) -> ProviderReport:
    """A reversal result: 0 with a receipt reverses; R000001 already reversed; else failed."""
    info = mpesa_b2c_result(envelope.code)
    receipt = None if _placeholder(envelope.transaction_id) else envelope.transaction_id
    state = report_state(info.state)
    message = envelope.description
    if state is ReportState.SUCCEEDED and not receipt:
        state = ReportState.PENDING
        message = f"{message or 'Success'} (no receipt)"
    return ProviderReport(
        state=state,
        provider_ref=envelope.conversation_id,
        raw_code=info.code,
        raw_message=message,
        failure_code=info.failure_code if state is ReportState.FAILED else None,
        receipt=receipt if state is ReportState.SUCCEEDED else None,
        amount=_decimal(envelope.parameters.get("Amount")),
    )
