"""Matching a provider statement against Lipwa's payments: pure, no I/O.

Every statement row and every payment given lands in exactly one ``Item`` (a bucket), and the
result does not depend on the order of either input.

How rows find payments (incoming, completed rows only):

1. **Receipt**: the row's receipt equals a payment's receipt (M-Pesa ``MpesaReceiptNumber``,
   MoMo ``financialTransactionId``).
2. **Reference**: the row's reference is a payment's id (MoMo echoes our ``externalId``,
   which is the payment id) — only payments without a receipt.
3. **Amount + party + time**: same currency and amount, the row's party agrees with the
   payment's phone on every digit the statement shows (masked digits are skipped), and the
   row completed within ``window`` (10 min) of the payment's creation — only payments without
   a receipt (a receipt is the provider's id: a different one is a different transaction).
   Among several candidates: the succeeded, then the open, then the failed payment; then the
   closest in time; then the one whose reference the row carries; then the lowest id. A row
   whose party shows no digit (blank or fully masked) pairs only with a succeeded payment:
   amount and time alone never settle an open payment nor call a failed one paid — both are
   left to a human (``missing_in_lipwa`` and ``unknown_unpaid_suspected``).

A pair is then judged: ``amount_mismatch`` (amount or currency differ), ``party_mismatch``
(a visible digit disagrees), else by the payment's status: ``matched`` (succeeded),
``unknown_resolved`` (pending or unknown: the statement proves it paid — the service settles
it), ``paid_but_failed`` (Lipwa said failed; the provider took the money).

Left-over rows: ``missing_in_lipwa`` if they fall in the period, else ``out_of_range``;
outgoing or not-completed rows are ``ignored``. Left-over payments are judged only when the
period **covers** them — it started before the payment was created and ended after the
provider must have acted (succeeded: when Lipwa learned of it, ``finalized_at``; open:
creation + ``window``): ``missing_at_provider`` (succeeded), ``unknown_unpaid_suspected``
(open; reported, never failed on absence alone), ``failed_confirmed`` (failed, no money).
Payments the period does not cover are ``out_of_range``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from lipwa.reconcile.statements import StatementRow

WINDOW = timedelta(minutes=10)

MATCHED = "matched"
AMOUNT_MISMATCH = "amount_mismatch"
PARTY_MISMATCH = "party_mismatch"
UNKNOWN_RESOLVED = "unknown_resolved"
PAID_BUT_FAILED = "paid_but_failed"
MISSING_IN_LIPWA = "missing_in_lipwa"
MISSING_AT_PROVIDER = "missing_at_provider"
UNKNOWN_UNPAID_SUSPECTED = "unknown_unpaid_suspected"
FAILED_CONFIRMED = "failed_confirmed"
OUT_OF_RANGE = "out_of_range"
IGNORED = "ignored"

# What needs a human, most serious first; the rest are fine.
DISCREPANCIES = (
    MISSING_AT_PROVIDER,
    PAID_BUT_FAILED,
    AMOUNT_MISMATCH,
    MISSING_IN_LIPWA,
    PARTY_MISMATCH,
    UNKNOWN_UNPAID_SUSPECTED,
)
CRITICAL = frozenset({MISSING_AT_PROVIDER, PAID_BUT_FAILED})
KINDS = (
    MATCHED, UNKNOWN_RESOLVED, *DISCREPANCIES, FAILED_CONFIRMED, OUT_OF_RANGE, IGNORED,
)  # fmt: skip

OPEN = frozenset({"pending", "unknown"})
_STATUS_RANK = {"succeeded": 0, "pending": 1, "unknown": 1, "failed": 2}


@dataclass(frozen=True)
class PaymentFacts:
    """What the matcher needs of a Lipwa payment."""

    id: str
    status: str  # pending | unknown | succeeded | failed
    amount: Decimal
    currency: str
    phone: str  # digits with country code
    receipt: str | None
    created_at: datetime
    finalized_at: datetime | None = None
    reference: str = ""  # what the provider was shown (AccountReference)


@dataclass(frozen=True)
class Period:
    """The time the statement speaks for: ``[start, end)``."""

    start: datetime
    end: datetime

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class Item:
    kind: str
    row: StatementRow | None = None
    payment: PaymentFacts | None = None
    matched_by: str | None = None  # receipt | reference | amount_party_time
    detail: dict[str, Any] = field(default_factory=dict)


# ----- parties ----------------------------------------------------------------------------------
def _clean(number: str) -> str:
    return "".join("*" if c in "*xX#" else c for c in number if c.isdigit() or c in "*xX#")


def _ends(pattern: str) -> tuple[str, str]:
    """Visible head and tail of a masked number (``2547****149`` → ``2547``, ``149``)."""
    return pattern[: pattern.index("*")], pattern[pattern.rindex("*") + 1 :]


def party_agrees(printed: str, phone: str) -> bool:
    """Whether a statement's party (possibly masked: ``2547****149``, ``0708***149``) can be
    ``phone`` (digits with country code; masked itself for C2B payments, ``2547 ***** 126``).
    Only visible digits are compared; a blank or fully masked side agrees with anything."""
    printed, phone = _clean(printed), _clean(phone)
    if not any(c.isdigit() for c in printed) or not any(c.isdigit() for c in phone):
        return True
    if "*" in phone and "*" not in printed:
        printed, phone = phone, printed  # compare the masked one against the full one
    if "*" in phone:  # both masked: the visible ends must not contradict each other
        head_a, tail_a = _ends(printed)
        head_b, tail_b = _ends(phone)
        tails = tail_a.endswith(tail_b) or tail_b.endswith(tail_a)
        if printed.startswith("0") != phone.startswith("0"):
            return tails  # local vs international form: heads are not comparable
        return tails and (head_a.startswith(head_b) or head_b.startswith(head_a))
    if "*" in printed and phone.startswith("0") and not printed.startswith("0"):
        return phone.endswith(_ends(printed)[1])  # full local vs masked international
    forms = [phone]
    if printed.startswith("0") and not printed.startswith("00") and len(phone) > 9:
        forms = ["0" + phone[-9:]]  # local form: trunk 0 + the 9-digit national number
    if "*" not in printed:
        return printed in forms
    head, tail = _ends(printed)
    return any(
        f.startswith(head) and f.endswith(tail) and len(head) + len(tail) <= len(f) for f in forms
    )


# ----- matching -----------------------------------------------------------------------------------
def covers(period: Period, payment: PaymentFacts, window: timedelta = WINDOW) -> bool:
    """Whether the statement must show ``payment`` if the provider took its money."""
    if payment.created_at < period.start:
        return False
    if payment.status == "succeeded":
        acted_by = payment.finalized_at or payment.created_at
    else:
        acted_by = payment.created_at + window
    return acted_by <= period.end


def _judge(row: StatementRow, payment: PaymentFacts, matched_by: str) -> Item:
    detail: dict[str, Any] = {}
    if row.amount != payment.amount or row.currency != payment.currency:
        kind = AMOUNT_MISMATCH
        detail = {
            "statement_amount": str(row.amount),
            "lipwa_amount": str(payment.amount),
            "statement_currency": row.currency,
            "lipwa_currency": payment.currency,
        }
    elif not party_agrees(row.party, payment.phone):
        kind = PARTY_MISMATCH
        detail = {"statement_party": row.party}
    elif payment.status == "succeeded":
        kind = MATCHED
    elif payment.status in OPEN:
        kind = UNKNOWN_RESOLVED
        detail = {"previous_status": payment.status}
    else:
        kind = PAID_BUT_FAILED
    return Item(kind, row, payment, matched_by, detail)


def _row_order(row: StatementRow) -> tuple[datetime, str]:
    return row.completed_at, row.receipt


def _candidate_key(row: StatementRow, payment: PaymentFacts) -> tuple[int, float, int, str]:
    distance = abs((row.completed_at - payment.created_at).total_seconds())
    carries_reference = 0 if payment.reference and payment.reference == row.reference else 1
    return _STATUS_RANK.get(payment.status, 3), distance, carries_reference, payment.id


class _Pool:
    """Payments without a receipt by (currency, amount), each list sorted by creation time."""

    def __init__(self, payments: Iterable[PaymentFacts]) -> None:
        self._lists: dict[tuple[str, Decimal], list[PaymentFacts]] = {}
        for p in payments:
            self._lists.setdefault((p.currency, p.amount), []).append(p)
        for found in self._lists.values():
            found.sort(key=lambda p: (p.created_at, p.id))
        self._times = {k: [p.created_at for p in v] for k, v in self._lists.items()}

    def near(self, row: StatementRow, window: timedelta) -> list[PaymentFacts]:
        key = (row.currency, row.amount)
        found, times = self._lists.get(key, []), self._times.get(key, [])
        lo = bisect_left(times, row.completed_at - window)
        hi = bisect_right(times, row.completed_at + window)
        return found[lo:hi]


def match(
    rows: Iterable[StatementRow],
    payments: Iterable[PaymentFacts],
    period: Period,
    window: timedelta = WINDOW,
) -> list[Item]:
    """Sort every row and payment into exactly one bucket (see the module docstring)."""
    all_rows = sorted(rows, key=_row_order)
    unpaired = sorted(payments, key=lambda p: p.id)
    items: list[Item] = []
    live: list[StatementRow] = []
    for row in all_rows:
        if row.direction != "in" or row.status != "completed":
            reason = "outgoing" if row.direction != "in" else f"status {row.status}"
            items.append(Item(IGNORED, row, detail={"reason": reason}))
        else:
            live.append(row)

    by_receipt: dict[str, PaymentFacts] = {}
    for p in unpaired:
        if p.receipt:
            by_receipt.setdefault(p.receipt, p)
    by_id = {p.id: p for p in unpaired if not p.receipt}
    taken: set[str] = set()
    waiting: list[StatementRow] = []
    for row in live:  # 1 and 2: exact keys
        found = by_receipt.get(row.receipt)
        how = "receipt"
        if found is None and row.reference in by_id:
            found, how = by_id[row.reference], "reference"
        if found is not None and found.id not in taken:
            taken.add(found.id)
            items.append(_judge(row, found, how))
        else:
            waiting.append(row)

    pool = _Pool(p for p in unpaired if not p.receipt and p.id not in taken)
    left: list[StatementRow] = []
    for row in waiting:  # 3: amount + party + time, greedily in row order
        shows_party = any(c.isdigit() for c in row.party)
        candidates = [
            p
            for p in pool.near(row, window)
            if p.id not in taken
            and party_agrees(row.party, p.phone)
            and (shows_party or p.status == "succeeded")
        ]
        if candidates:
            best = min(candidates, key=lambda p: _candidate_key(row, p))
            taken.add(best.id)
            items.append(_judge(row, best, "amount_party_time"))
        else:
            left.append(row)

    for row in left:
        items.append(Item(MISSING_IN_LIPWA if row.completed_at in period else OUT_OF_RANGE, row))
    for p in unpaired:
        if p.id in taken:
            continue
        if not covers(period, p, window):
            items.append(Item(OUT_OF_RANGE, payment=p))
        elif p.status == "succeeded":
            items.append(Item(MISSING_AT_PROVIDER, payment=p))
        elif p.status in OPEN:
            items.append(Item(UNKNOWN_UNPAID_SUSPECTED, payment=p, detail={"status": p.status}))
        else:
            items.append(Item(FAILED_CONFIRMED, payment=p))
    return items


def summarise(items: Sequence[Item]) -> dict[str, int]:
    counts = dict.fromkeys(KINDS, 0)
    for item in items:
        counts[item.kind] = counts.get(item.kind, 0) + 1
    return counts
