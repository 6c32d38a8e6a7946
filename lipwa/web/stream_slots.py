"""A cap on the progress streams one process holds open.

Each server-sent-events stream polls the database every half second for up to five minutes,
and a payer's link is public: without a cap, one token opened many times would hold that
many connections and database polls. Over the cap the stream is refused with 429 and the
page falls back to polling ``/status``, so a payer still sees the outcome.
"""

from __future__ import annotations

from collections import Counter

MAX_OPEN = 500  # per process
MAX_PER_PAYMENT = 4  # a payer with a few tabs; more is not a payer


class Slot:
    """One held slot; ``release`` gives it back once however often it is called."""

    def __init__(self, slots: StreamSlots, payment_id: str) -> None:
        self._slots: StreamSlots | None = slots
        self._payment_id = payment_id

    def release(self) -> None:
        if self._slots is not None:
            self._slots.give_back(self._payment_id)
            self._slots = None


class StreamSlots:
    def __init__(self, max_open: int = MAX_OPEN, max_per_payment: int = MAX_PER_PAYMENT) -> None:
        self._max_open = max_open
        self._max_per_payment = max_per_payment
        self._open: Counter[str] = Counter()

    def take(self, payment_id: str) -> Slot | None:
        """A slot for one stream of ``payment_id``; None when none is free."""
        if self._open.total() >= self._max_open:
            return None
        if self._open[payment_id] >= self._max_per_payment:
            return None
        self._open[payment_id] += 1
        return Slot(self, payment_id)

    def give_back(self, payment_id: str) -> None:
        self._open[payment_id] -= 1
        if self._open[payment_id] <= 0:
            del self._open[payment_id]

    def open_count(self) -> int:
        return self._open.total()
