"""The payment state machine: money states only move forward.

``pending`` → ``unknown`` (we lost the provider's answer) → ``succeeded`` | ``failed``.
The first final report wins. A final payment never changes: the same outcome again is a no-op,
the opposite outcome is an anomaly kept for an operator, and "still pending" is ignored.
Failure reasons are normalised codes from ``FAILURE_CODES``; provider result codes map onto them
elsewhere (``lipwa.domain.codes``).
"""

from __future__ import annotations

from enum import StrEnum


class PaymentStatus(StrEnum):
    PENDING = "pending"  # sent (or about to be sent) to the provider, no outcome yet
    UNKNOWN = "unknown"  # the provider's answer was lost; resolve by query or reconciliation
    SUCCEEDED = "succeeded"
    FAILED = "failed"


FINAL_STATUSES: frozenset[PaymentStatus] = frozenset(
    {PaymentStatus.SUCCEEDED, PaymentStatus.FAILED}
)


class Transition(StrEnum):
    APPLIED = "applied"  # store the reported status
    NOOP = "noop"  # nothing to do (duplicate, stale or backwards report)
    ANOMALY = "anomaly"  # final payment reported with the opposite outcome: keep, alert


def decide_transition(
    current: PaymentStatus,
    reported: PaymentStatus,
    *,
    current_failure: str | None = None,
    reported_failure: str | None = None,
) -> Transition:
    """What to do when a provider reports ``reported`` for a payment now in ``current``.

    The failure codes are informational: a second ``failed`` with a different code is still a
    no-op (the first failure code is kept).
    """
    del current_failure, reported_failure  # the first failure reason always stands
    if current in FINAL_STATUSES:
        if reported in FINAL_STATUSES and reported != current:
            return Transition.ANOMALY
        return Transition.NOOP
    if reported in FINAL_STATUSES:
        return Transition.APPLIED
    if current is PaymentStatus.PENDING and reported is PaymentStatus.UNKNOWN:
        return Transition.APPLIED
    return Transition.NOOP  # pending again, unknown again, or unknown → pending (never back)


FAILURE_CODES: dict[str, str] = {
    "payer_declined": "The payer cancelled or rejected the payment prompt on their phone.",
    "payer_unreachable": "The payer's phone could not be reached (switched off, no network) or "
    "they did not answer the prompt in time.",
    "insufficient_funds": "The payer's mobile money balance was too low for this payment.",
    "wrong_pin": "The payer entered a wrong PIN, or their PIN is locked.",
    "payer_not_found": "The number is not registered for mobile money with this provider.",
    "expired": "The payment request expired before the payer approved it.",
    "subscriber_busy": "The payer already had another payment prompt open (M-Pesa 1001); "
    "wait a minute or two and try again.",
    "limit_exceeded": "A transaction, daily or balance limit of the payer or the merchant "
    "account was exceeded.",
    "not_allowed": "The merchant's provider account is not allowed to make this request "
    "(permissions, environment or currency).",
    "invalid_request": "The provider rejected the request as misconfigured, for example a "
    "shortcode or till that does not match the product (M-Pesa 2028, SFC_IC0003). Fix the "
    "account settings before retrying.",
    "provider_error": "The provider reported an internal or generic error; no money moved.",
    "provider_unavailable": "The provider's service was unavailable or overloaded; try again "
    "later.",
    "duplicate_transaction": "The provider refused a repeat of the same amount to the same "
    "payer within a short window (M-Pesa 17); wait two minutes before retrying.",
    "timeout": "No final answer came from the provider in time and the payment was closed "
    "as failed.",
    "rejected_by_provider": "The provider declined the payment for a reason it did not detail.",
    "unknown_failure": "The payment failed with a code Lipwa does not know yet; the raw "
    "provider code is kept on the payment.",
}


def describe_failure(code: str | None) -> str:
    """Plain-language explanation of a failure code (unknown codes get the generic one)."""
    return FAILURE_CODES.get(code or "unknown_failure", FAILURE_CODES["unknown_failure"])
