"""Shared machinery of the provider simulator: faults, callback delivery, ledger, logs.

The simulator stands apart from the gateway: it imports nothing from ``lipwa`` outside this
folder and knows only the providers' wire protocol. Provider modules (``daraja``, ``momo``)
own their routes and records and use this module for everything cross-cutting.

Fault decisions are derived from ``(seed, kind, key)`` rather than from one shared random
stream, so a run with the same seed makes the same decision for the same transaction no
matter in which order concurrent requests arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from typing import Any

import httpx

MAX_DELIVERIES = 32  # callbacks in flight at once


@dataclass
class Faults:
    """Misbehaviour to inject. Percentages are 0..100."""

    callback_drop_pct: float = 0.0
    callback_duplicate_pct: float = 0.0
    callback_delay_min_s: float = 0.0
    callback_delay_max_s: float = 0.0
    # Out-of-order: a callback is held back and released only after the next one.
    callback_reorder_pct: float = 0.0
    error_pct: float = 0.0  # answer API calls with the provider's own 5xx/throttle error
    # MoMo creating POSTs: the request is created, then answered 500 INTERNAL_PROCESSING_ERROR
    # (MTN's "outcome unknown: GET the reference, retry with the same one").
    created_error_pct: float = 0.0
    latency_ms: float = 0.0  # added to every API answer, before the request is processed
    # The provider acts at once but its answer leaves this late: a client that times out
    # meanwhile cannot know the request took effect, and a callback may beat the answer.
    answer_delay_ms: float = 0.0

    def update(self, values: dict[str, Any]) -> None:
        """All of ``values`` or, on a bad one, none (ValueError)."""
        _all_or_nothing(self, self._apply, values)

    def _apply(self, values: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for name, value in values.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r}")
            number = float(value)
            if number < 0 or (name.endswith("_pct") and number > 100):
                raise ValueError(f"fault {name!r} out of range: {value!r}")
            setattr(self, name, number)
        if self.callback_delay_max_s < self.callback_delay_min_s:
            raise ValueError("callback_delay_max_s must be >= callback_delay_min_s")


@dataclass
class SimSettings:
    """Behaviour knobs that are not faults."""

    # How long an STK prompt / request-to-pay stays open before the payer "answers".
    prompt_seconds: float = 1.0
    # Lifetime of issued OAuth tokens (seconds); the real value is 3600.
    token_ttl_s: int = 3600
    # MoMo callback method for request-to-pay and transfer (the docs conflict: PUT or POST).
    momo_callback_method: str = "PUT"
    # Host name the demo MoMo API user has registered as providerCallbackHost.
    momo_callback_host: str = "localhost"
    # Seconds the simulator waits for a merchant's C2B validation answer.
    c2b_validation_timeout_s: float = 8.0
    # Daraja asks the ValidationURL only for shortcodes with External Validation switched on
    # (on request to Safaricom); off, every payment is confirmed and no rule can refuse it.
    c2b_external_validation: bool = True
    # A failed MoMo transaction's ``reason``: "string" as the sandbox sends it, or "object"
    # ({"code", "message"}) as the spec and some production markets do.
    momo_reason_form: str = "string"

    def update(self, values: dict[str, Any]) -> None:
        """All of ``values`` or, on a bad one, none (ValueError)."""
        _all_or_nothing(self, self._apply, values)

    def _apply(self, values: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for name, value in values.items():
            if name not in known:
                raise ValueError(f"unknown setting {name!r}")
            current = getattr(self, name)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"setting {name!r} takes true or false")
                setattr(self, name, value)
            elif isinstance(current, str):
                setattr(self, name, str(value))
            elif isinstance(current, int) and not isinstance(current, bool):
                setattr(self, name, int(value))
            else:
                setattr(self, name, float(value))
        if self.momo_callback_method not in {"PUT", "POST"}:
            raise ValueError("momo_callback_method must be PUT or POST")
        if self.momo_reason_form not in {"string", "object"}:
            raise ValueError("momo_reason_form must be string or object")


def _all_or_nothing(
    target: Any, apply: Callable[[dict[str, Any]], None], values: dict[str, Any]
) -> None:
    """Apply ``values``; a bad one restores every field (a PUT /_sim/... changes all or none)."""
    before = {f.name: getattr(target, f.name) for f in fields(target)}
    try:
        apply(values)
    except (ValueError, TypeError):
        for name, value in before.items():
            setattr(target, name, value)
        raise


@dataclass
class CallbackRecord:
    id: int
    provider: str
    kind: str
    key: str
    url: str
    method: str
    body: Any
    duplicate: bool = False
    dropped: bool = False
    held_back: bool = False
    status_code: int | None = None
    error: str | None = None
    response_body: str | None = None
    scheduled_at: float = 0.0
    delivered_at: float | None = None


@dataclass
class StatementRow:
    """One line of a provider statement, in the simulator's neutral form."""

    provider: str
    account: str  # shortcode (M-Pesa) or "<product>:<currency>" (MoMo)
    receipt: str
    completed_at: float
    details: str
    party: str
    paid_in: Decimal = Decimal(0)
    withdrawn: Decimal = Decimal(0)
    balance: Decimal = Decimal(0)
    status: str = "Completed"
    reference: str = ""


@dataclass
class Ledger:
    """Balances that move with each transaction, and the statement lines that moved them."""

    balances: dict[str, Decimal] = field(default_factory=dict)
    rows: list[StatementRow] = field(default_factory=list)

    def open(self, account: str, balance: Decimal) -> None:
        self.balances.setdefault(account, balance)

    def post(
        self,
        provider: str,
        account: str,
        amount: Decimal,
        *,
        receipt: str,
        details: str,
        party: str,
        reference: str = "",
    ) -> Decimal:
        """Credit (amount > 0) or debit (amount < 0) an account; returns the new balance."""
        balance = self.balances.get(account, Decimal(0)) + amount
        self.balances[account] = balance
        self.rows.append(
            StatementRow(
                provider=provider,
                account=account,
                receipt=receipt,
                completed_at=time.time(),
                details=details,
                party=party,
                paid_in=amount if amount > 0 else Decimal(0),
                withdrawn=-amount if amount < 0 else Decimal(0),
                balance=balance,
                reference=reference,
            )
        )
        return balance


class Simulator:
    """State of one simulator instance, shared by its provider modules and control API."""

    def __init__(
        self,
        seed: int = 0,
        faults: Faults | None = None,
        settings: SimSettings | None = None,
    ) -> None:
        self.seed = seed
        self.faults = faults or Faults()
        self.settings = settings or SimSettings()
        self.requests: deque[dict[str, Any]] = deque(maxlen=20_000)
        self.callbacks: list[CallbackRecord] = []
        self.ledger = Ledger()
        # (provider, "reference" | "phone", value) -> outcome name understood by that provider
        self.overrides: dict[tuple[str, str, str], str] = {}
        # Provider modules keep their records here: provider -> reference -> record
        self.transactions: dict[str, dict[str, dict[str, Any]]] = {}
        # Tokens issued, any provider: token -> (provider, owner, expires_at)
        self.tokens: dict[str, tuple[str, str, float]] = {}
        self.provider_state: dict[str, Any] = {}
        self._callback_ids = itertools.count(1)
        self._held: dict[str, CallbackRecord] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        # Callbacks in flight at once: unbounded delivery makes httpx's pool bookkeeping eat
        # the process once callbacks fall behind (measured in bench/).
        self._delivery_slots: asyncio.Semaphore | None = None
        self.started_at = time.time()

    # ----- deterministic chance -------------------------------------------------------------
    def chance(self, kind: str, key: str) -> float:
        """A reproducible number in [0, 1) for a decision about one thing."""
        digest = hashlib.sha256(f"{self.seed}:{kind}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def rng_for(self, kind: str, key: str) -> random.Random:
        return random.Random(f"{self.seed}:{kind}:{key}")

    def new_id(self, kind: str) -> str:
        return uuid.uuid4().hex if kind else ""

    # ----- request log and fault injection --------------------------------------------------
    def record_request(
        self, provider: str, method: str, path: str, headers: dict[str, str], body: Any
    ) -> None:
        self.requests.append(
            {
                "at": time.time(),
                "provider": provider,
                "method": method,
                "path": path,
                "headers": headers,
                "body": body,
            }
        )

    async def add_latency(self) -> None:
        if self.faults.latency_ms > 0:
            await asyncio.sleep(self.faults.latency_ms / 1000)

    def fails_after_create(self, key: str) -> bool:
        """Whether a creating call that took effect is answered with a 5xx all the same."""
        pct = self.faults.created_error_pct
        return pct > 0 and self.chance("created-error", key) * 100 < pct

    def should_fail(self, key: str) -> bool:
        """Whether to answer this API call with an injected provider error.

        ``key`` names the call (e.g. a request id); unique per call so each call draws anew.
        """
        return self.faults.error_pct > 0 and self.chance("error", key) * 100 < self.faults.error_pct

    # ----- outcome overrides ----------------------------------------------------------------
    def override_for(self, provider: str, reference: str | None, phone: str | None) -> str | None:
        if reference and (provider, "reference", reference) in self.overrides:
            return self.overrides[(provider, "reference", reference)]
        if phone and (provider, "phone", phone) in self.overrides:
            return self.overrides[(provider, "phone", phone)]
        return None

    # ----- tokens ---------------------------------------------------------------------------
    def issue_token(self, provider: str, owner: str, length: int = 28) -> tuple[str, int]:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        token = "".join(random.SystemRandom().choice(alphabet) for _ in range(length))
        ttl = self.settings.token_ttl_s
        self.tokens[token] = (provider, owner, time.time() + ttl)
        return token, ttl

    def token_owner(self, provider: str, token: str) -> str | None:
        """The owner of a live token of this provider, or None if unknown or expired."""
        entry = self.tokens.get(token)
        if entry is None or entry[0] != provider or entry[2] <= time.time():
            return None
        return entry[1]

    def expire_tokens(self, provider: str | None = None) -> int:
        count = 0
        for token, (prov, owner, _) in list(self.tokens.items()):
            if provider is None or prov == provider:
                self.tokens[token] = (prov, owner, 0.0)
                count += 1
        return count

    # ----- callbacks ------------------------------------------------------------------------
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(10.0),
                follow_redirects=False,
                limits=httpx.Limits(max_connections=MAX_DELIVERIES, max_keepalive_connections=16),
            )
        return self._client

    def spawn(self, coro: Any) -> None:
        """Run a coroutine in the background, keeping a reference so it is not collected."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send_callback(
        self,
        provider: str,
        kind: str,
        key: str,
        url: str,
        body: Any,
        method: str = "POST",
        headers: dict[str, str] | None = None,
    ) -> CallbackRecord:
        """Schedule a callback to ``url`` with the configured faults applied.

        ``key`` identifies the transaction (used for reproducible fault decisions).
        """
        f = self.faults
        record = CallbackRecord(
            id=next(self._callback_ids),
            provider=provider,
            kind=kind,
            key=key,
            url=url,
            method=method,
            body=body,
            scheduled_at=time.time(),
        )
        self.callbacks.append(record)
        if f.callback_drop_pct and self.chance("drop", key) * 100 < f.callback_drop_pct:
            record.dropped = True
            return record
        copies = [record]
        if f.callback_duplicate_pct and self.chance("dup", key) * 100 < f.callback_duplicate_pct:
            twin = CallbackRecord(**{**asdict(record), "id": next(self._callback_ids)})
            twin.duplicate = True
            self.callbacks.append(twin)
            copies.append(twin)
        rng = self.rng_for("delay", key)
        for copy in copies:
            delay = 0.0
            if f.callback_delay_max_s > 0:
                delay = rng.uniform(f.callback_delay_min_s, f.callback_delay_max_s)
            self.spawn(self._deliver_later(copy, delay, headers or {}))
        return record

    async def _deliver_later(
        self, record: CallbackRecord, delay: float, headers: dict[str, str]
    ) -> None:
        if delay:
            await asyncio.sleep(delay)
        reorder = self.faults.callback_reorder_pct
        if reorder and self.chance(f"reorder{record.id}", record.key) * 100 < reorder:
            # Hold this one back until the next callback goes out (or 2 s at most).
            record.held_back = True
            previous = self._held.pop(record.provider, None)
            self._held[record.provider] = record
            if previous is not None:
                await self._deliver(previous, headers)
            await asyncio.sleep(2.0)
            if self._held.get(record.provider) is record:
                self._held.pop(record.provider, None)
                await self._deliver(record, headers)
            return
        await self._deliver(record, headers)
        held = self._held.pop(record.provider, None)
        if held is not None:
            await self._deliver(held, headers)

    async def _deliver(self, record: CallbackRecord, headers: dict[str, str]) -> None:
        if self._delivery_slots is None:
            self._delivery_slots = asyncio.Semaphore(MAX_DELIVERIES)
        async with self._delivery_slots:
            await self._deliver_now(record, headers)

    async def _deliver_now(self, record: CallbackRecord, headers: dict[str, str]) -> None:
        try:
            response = await self.client().request(
                record.method,
                record.url,
                json=record.body,
                headers={"User-Agent": f"lipwa-simulator/{record.provider}", **headers},
            )
            record.status_code = response.status_code
            record.response_body = response.text[:2000]
        except httpx.HTTPError as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        record.delivered_at = time.time()

    async def call_merchant(
        self, url: str, body: Any, wait_s: float
    ) -> tuple[int | None, Any, str | None]:
        """A synchronous call to a merchant URL (C2B validation): status, JSON body, error."""
        try:
            response = await self.client().post(url, json=body, timeout=wait_s)
        except httpx.HTTPError as exc:
            return None, None, f"{type(exc).__name__}: {exc}"
        try:
            payload = response.json()
        except ValueError:
            payload = None
        return response.status_code, payload, None

    async def drain(self, wait_s: float = 10.0) -> None:
        """Wait until scheduled callbacks and background work have finished (for tests)."""
        deadline = time.monotonic() + wait_s
        # Tasks may spawn more tasks (a settle schedules a callback): wait in rounds.
        while self._tasks and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def reset(self) -> None:
        """Forget every transaction, callback, token, override and fault; keep credentials."""
        self.requests.clear()
        self.callbacks.clear()
        self.overrides.clear()
        self.transactions.clear()
        self.tokens.clear()
        self.faults = Faults()
        self.ledger = Ledger()
        for hook in self.provider_state.get("_reset_hooks", []):
            hook()
