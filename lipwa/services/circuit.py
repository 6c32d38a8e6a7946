"""A circuit breaker per provider account: stop calling a provider that keeps failing.

It is a ``Guard`` of ``CollectService``. ``observe`` counts consecutive failed sends (AMBIGUOUS,
or REJECTED as transient: throttled, unreachable, token endpoint down); the recovery worker
reports its status queries too (``record``). After ``failures`` in a row the circuit opens and
``check`` refuses new payments for that account *before* anything is written or sent
(503 ``provider_unavailable``). After ``cooldown_s`` it is half-open: one request goes through
as a trial; its success closes the circuit, its failure opens it again. Any success (a send the
provider answered definitively, a status query answered) closes it.

State lives in memory, per process: each API or worker process learns on its own, and a
restart closes every circuit. That is enough to fail fast; it is not a shared quota.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.errors import ApiError
from lipwa.providers.base import SendOutcome, SendResult
from lipwa.services.accounts import Caller
from lipwa.services.collect import PaymentIn, Plan

PROVIDER_NAMES = {"mpesa": "M-Pesa", "momo": "MTN MoMo"}


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class _Circuit:
    provider: str
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0  # consecutive
    opened_at: float = 0.0
    trial_at: float | None = None  # when the half-open trial was let through


def is_failure(result: SendResult) -> bool:
    """A send that says nothing about the provider being healthy."""
    if result.outcome is SendOutcome.AMBIGUOUS:
        return True
    return result.outcome is SendOutcome.REJECTED and result.transient


class CircuitBreaker:
    def __init__(
        self,
        failures: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = max(1, failures)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    # ----- Guard protocol ----------------------------------------------------------------------
    async def check(
        self, session: AsyncSession, caller: Caller, plan: Plan, data: PaymentIn
    ) -> None:
        self.admit(plan.account.id, plan.account.provider)

    async def observe(self, plan: Plan, result: SendResult) -> None:
        self.record(plan.account.id, plan.account.provider, failed=is_failure(result))

    # ----- the breaker -------------------------------------------------------------------------
    def admit(self, account_id: str, provider: str) -> None:
        """Raise ApiError(503) unless a call to this account may go out now."""
        circuit = self._circuits.get(account_id)
        if circuit is None or circuit.state is CircuitState.CLOSED:
            return
        now = self._clock()
        if circuit.state is CircuitState.OPEN and now - circuit.opened_at >= self.cooldown_s:
            circuit.state = CircuitState.HALF_OPEN
            circuit.trial_at = None
        # Half-open: one trial at a time; a trial that never reported back frees the slot
        # after a cool-down of its own.
        if circuit.state is CircuitState.HALF_OPEN and (
            circuit.trial_at is None or now - circuit.trial_at >= self.cooldown_s
        ):
            circuit.trial_at = now
            return
        raise self._refusal(circuit, now)

    def record(self, account_id: str, provider: str, *, failed: bool) -> None:
        circuit = self._circuits.get(account_id)
        if not failed:
            if circuit is not None:
                circuit.state, circuit.failures, circuit.trial_at = CircuitState.CLOSED, 0, None
            return
        if circuit is None:
            circuit = self._circuits[account_id] = _Circuit(provider)
        circuit.failures += 1
        if circuit.state is CircuitState.HALF_OPEN or circuit.failures >= self.failures:
            circuit.state = CircuitState.OPEN
            circuit.opened_at = self._clock()
            circuit.trial_at = None

    def state(self, account_id: str) -> CircuitState:
        circuit = self._circuits.get(account_id)
        return circuit.state if circuit else CircuitState.CLOSED

    def snapshot(self) -> list[dict[str, Any]]:
        """Every account with a recent failure, for the admin API and readiness."""
        now = self._clock()
        out = []
        for account_id, c in sorted(self._circuits.items()):
            if c.state is CircuitState.CLOSED and c.failures == 0:
                continue
            retry_in = (
                max(self.cooldown_s - (now - c.opened_at), 0.0)
                if c.state is CircuitState.OPEN
                else 0.0
            )
            out.append(
                {
                    "account_id": account_id,
                    "provider": c.provider,
                    "state": c.state.value,
                    "consecutive_failures": c.failures,
                    "retry_in_s": round(retry_in, 1),
                }
            )
        return out

    def _refusal(self, circuit: _Circuit, now: float) -> ApiError:
        name = PROVIDER_NAMES.get(circuit.provider, circuit.provider)
        wait = max(self.cooldown_s - (now - circuit.opened_at), 1.0)
        return ApiError(
            503,
            "provider_error",
            "provider_unavailable",
            f"{name} is not answering; try again in a minute",
            None,
            headers={"Retry-After": str(int(wait + 0.999))},
        )
