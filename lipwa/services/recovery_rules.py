"""When to ask a provider about an open payment again, and what its answer means. Pure rules.

Schedule
--------
The write-ahead sets the first check ``first_check_after_s`` (20 s) after initiation: Daraja
advises a first STK query at 15-20 s, and a MoMo check that early is cheap. Each check that
does not settle the payment waits ``initial * 2^(n-1)`` seconds, capped: with the defaults
15 s, 30 s, 60 s, 120 s, 240 s, 480 s, then every 600 s. So the checks fall at about 20 s,
35 s, 65 s, 125 s, 245 s, 485 s, 16 min and every 10 min after, until the hard horizon
(24 h); none is scheduled past the horizon. MoMo status GETs are also paced to at most 10/s
per account (``lipwa.services.pacing``).

Open too long
-------------
A payment with no final answer well after the payer's window (Daraja: prompt ~60 s, so 3 min;
MoMo: 5-minute approval window, so 10 min) becomes ``unknown`` (visible to the merchant) and
keeps being checked on the schedule.

Expiry rule
-----------
At the horizon a payment is failed with ``expired`` (resolved_by ``expiry``) *only* when the
provider's last answer was PENDING or NOT_FOUND about a send that definitely happened or
definitely did not: an M-Pesa query needs the CheckoutRequestID Daraja gave us on acceptance,
and MoMo is asked about our own X-Reference-Id, so PENDING proves it arrived and a 404 proves
it did not. Anything inconclusive (a failed query, or an M-Pesa push whose answer was lost so
there is no CheckoutRequestID to ask about) never expires: the payment stays ``unknown``,
automatic checks stop, and reconciliation or an operator settles it. A provider might have
taken the money without telling us; only its statement can say.

Not-sent rule (the process died between write-ahead and the provider's answer)
-----------------------------------------------------------------------------
``send_state`` is ``not_sent`` until the API process records the provider's answer. Younger
than ``stale_send_after_s`` (60 s, longer than any send takes) the send may still be in
flight: wait. Older:

- MoMo: send the request-to-pay again, once, with the *same* X-Reference-Id (MoMo answers 409
  if the first one arrived), then poll as usual. (A re-send refused before anything left —
  connect error, throttling — does not use up the once.) Past the 5-minute approval window a prompt
  would only surprise the payer, so no re-send: the reference is looked up instead, and a 404
  fails the payment as ``expired`` at once (MoMo never had it and never will).
- M-Pesa: there is no CheckoutRequestID, so nothing can be asked, and an STK push is never
  re-sent blindly: the payment becomes ``unknown`` with ``send_state`` ``ambiguous`` and is
  left to a late callback, reconciliation or manual review.

Ambiguous MoMo send (the request-to-pay got a 5xx or no answer)
-------------------------------------------------------------------
It is looked up by its X-Reference-Id on the schedule. A 404 may only mean the request is
still on its way, so it is not believed at once. Once the approval window (5 minutes) is over
and any send made within it has surely ended (``stale_send_after_s`` more), a 404 means MoMo
never had the request and the payer can no longer be asked: the payment fails as ``expired``
instead of staying ``unknown`` until the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from lipwa.providers.base import ProviderReport, QueryFailure, ReportState

# After this long without a final answer the payer's window has surely closed.
OVERDUE_AFTER_S = {"mpesa": 180.0, "momo": 600.0}
# MoMo's payer approval window: a re-sent request-to-pay later than this would come too late.
MOMO_APPROVAL_WINDOW_S = 300.0


@dataclass(frozen=True)
class Schedule:
    backoff_initial_s: float = 15.0
    backoff_max_s: float = 600.0
    horizon_s: float = 24 * 3600.0
    stale_send_s: float = 60.0
    overdue_after_s: dict[str, float] = field(default_factory=lambda: dict(OVERDUE_AFTER_S))
    resend_window_s: float = MOMO_APPROVAL_WINDOW_S

    def delay(self, attempts: int) -> timedelta:
        """Wait after the ``attempts``-th check (1-based) that did not settle the payment."""
        exponent = min(max(attempts, 1) - 1, 30)
        return timedelta(seconds=min(self.backoff_initial_s * 2**exponent, self.backoff_max_s))


@dataclass(frozen=True)
class Facts:
    """What the rules need to know about one open payment."""

    provider: str  # mpesa | momo
    send_state: str  # not_sent | sent | ambiguous | rejected
    provider_ref: str | None  # CheckoutRequestID / X-Reference-Id
    created_at: datetime
    attempts: int


class Step(StrEnum):
    QUERY = "query"  # ask the provider
    RESEND = "resend"  # MoMo only: request-to-pay again with the same reference
    WAIT_FOR_SEND = "wait_for_send"  # the send may still be in flight
    MARK_AMBIGUOUS = "mark_ambiguous"  # M-Pesa send died unanswered: unknown, never re-sent
    PARK = "park"  # nothing to ask: unknown until a callback or reconciliation


def first_step(facts: Facts, schedule: Schedule, now: datetime) -> Step:
    age = (now - facts.created_at).total_seconds()
    if facts.send_state == "not_sent":
        if age < schedule.stale_send_s:
            return Step.WAIT_FOR_SEND
        if facts.provider == "mpesa":
            return Step.MARK_AMBIGUOUS
        if age < schedule.resend_window_s:
            return Step.RESEND
    if not facts.provider_ref:
        return Step.PARK
    return Step.QUERY


class Action(StrEnum):
    APPLY = "apply"  # the answer is final: apply it
    RETRY = "retry"  # ask again at ``at``
    EXPIRE = "expire"  # fail as expired (resolved_by expiry)
    PARK = "park"  # inconclusive at the horizon: unknown, no more automatic checks


@dataclass(frozen=True)
class Verdict:
    action: Action
    at: datetime | None = None
    unknown: bool = False  # also move pending → unknown
    reason: str = ""


def judge(
    facts: Facts, answer: ProviderReport | QueryFailure, schedule: Schedule, now: datetime
) -> Verdict:
    """What to do with a status query's answer."""
    if isinstance(answer, ProviderReport) and answer.state in (
        ReportState.SUCCEEDED,
        ReportState.FAILED,
    ):
        return Verdict(Action.APPLY, reason=f"provider reports {answer.state.value}")
    conclusive = isinstance(answer, ProviderReport)  # PENDING or NOT_FOUND
    said = answer.state.value if isinstance(answer, ProviderReport) else "no answer"
    if (
        conclusive
        and facts.send_state == "not_sent"
        and isinstance(answer, ProviderReport)
        and answer.state is ReportState.NOT_FOUND
    ):
        return Verdict(Action.EXPIRE, reason="never sent, and too late to send now")
    age = (now - facts.created_at).total_seconds()
    if (
        facts.provider == "momo"
        and facts.send_state == "ambiguous"
        and isinstance(answer, ProviderReport)
        and answer.state is ReportState.NOT_FOUND
        and age >= schedule.resend_window_s + schedule.stale_send_s
    ):
        return Verdict(Action.EXPIRE, reason="MoMo never had it, and its approval window is over")
    if age >= schedule.horizon_s:
        if conclusive and _send_is_definite(facts):
            return Verdict(Action.EXPIRE, reason=f"provider still says {said} at the horizon")
        return Verdict(Action.PARK, unknown=True, reason=f"{said} at the horizon")
    horizon = facts.created_at + timedelta(seconds=schedule.horizon_s)
    at = min(now + schedule.delay(facts.attempts), horizon)
    overdue = age >= schedule.overdue_after_s.get(facts.provider, 600.0)
    return Verdict(Action.RETRY, at=at, unknown=overdue, reason=f"provider says {said}")


def _send_is_definite(facts: Facts) -> bool:
    """Whether a PENDING / NOT_FOUND answer speaks about a send we know happened or not.

    M-Pesa is only ever asked with the CheckoutRequestID Daraja returned on acceptance; MoMo
    is asked about our own reference, so its answer settles whether the request arrived."""
    if facts.provider == "momo":
        return True
    return facts.send_state == "sent" and bool(facts.provider_ref)
