"""What the gateway's services know about any provider: results as values, one protocol.

Only modules under ``lipwa.providers`` know a wire format. Everything they return is one of
the plain values below; they raise only for programming errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class SendOutcome(StrEnum):
    ACCEPTED = "accepted"  # the provider took the request; the result comes later
    REJECTED = "rejected"  # the provider refused it; nothing happened, nothing will
    AMBIGUOUS = "ambiguous"  # timeout, reset, 5xx after sending: it may or may not have happened


@dataclass(frozen=True)
class SendResult:
    """The answer to a request that starts a transaction (STK push, request-to-pay, ...)."""

    outcome: SendOutcome
    provider_ref: str | None = None  # CheckoutRequestID / X-Reference-Id / ConversationID
    secondary_ref: str | None = None  # MerchantRequestID / OriginatorConversationID
    error_code: str | None = None  # provider's raw code: "400.002.02", "INVALID_CURRENCY", ...
    error_message: str | None = None
    http_status: int | None = None
    # For REJECTED: the normalised failure code to store on the payment.
    failure_code: str | None = None
    # For REJECTED: True when the refusal is transient and a *new* attempt may succeed
    # (throttling, maintenance). Never means "resend the same request blindly".
    transient: bool = False


class ReportState(StrEnum):
    PENDING = "pending"  # still open at the provider (prompt showing, "being processed")
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_FOUND = "not_found"  # the provider has no such transaction


@dataclass(frozen=True)
class ProviderReport:
    """What a callback or a status query says about one transaction."""

    state: ReportState
    provider_ref: str | None = None
    raw_code: str | None = None  # "0", "1032", "APPROVAL_REJECTED", ...
    raw_message: str | None = None
    failure_code: str | None = None  # normalised: payer_declined, insufficient_funds, ...
    receipt: str | None = None  # MpesaReceiptNumber / financialTransactionId
    amount: Decimal | None = None
    phone: str | None = None  # digits with country code, no '+'
    completed_at: datetime | None = None
    external_id: str | None = None  # MoMo externalId echo


@dataclass(frozen=True)
class QueryFailure:
    """A status query that could not be answered (network, 5xx, auth): try again later."""

    error_code: str | None
    error_message: str
    http_status: int | None = None
