"""The chaos test's load generator: a seeded plan of payments, posted with bounded concurrency.

Each planned payment has its own Idempotency-Key and reference (the reference is also the
M-Pesa AccountReference, so the simulator's record can be traced back to it). Requests go
alternately to the API processes. A request that fails in transport, answers 5xx or 409
``idempotency_in_progress`` is retried with the SAME key and body; some payments are posted
with a tiny first timeout (the client gives up while the gateway works on: the retry must
replay) and some as twins racing each other on two API processes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

# M-Pesa: the payer's last four digits pick the simulator's answer (daraja.LAST_FOUR).
MPESA_FAILING_ENDINGS = ("1032", "0001")  # cancelled by the payer, insufficient funds
# MoMo sandbox magic numbers: rejected by the payer, expired.
MOMO_FAILING_NUMBERS = ("46733123451", "46733123452")
FAIL_SHARE = 0.2  # of each provider's payments aimed at a failing number
SHORT_TIMEOUT_SHARE = 0.05  # first attempt with a tiny timeout: the retry must replay
TWIN_SHARE = 0.03  # two concurrent requests with one key, on two API processes
SHORT_TIMEOUT_S = 0.3
REQUEST_TIMEOUT_S = 20.0
MAX_ATTEMPTS = 10
IN_PROGRESS_TRIES = 2  # 409 idempotency_in_progress answers before a key is given up
UNSENT = "not sent: load budget spent"


@dataclass(frozen=True)
class PaymentSpec:
    index: int
    provider: str  # mpesa | momo
    phone: str
    amount: str
    currency: str
    reference: str
    key: str
    short_timeout: bool
    twin: bool

    def body(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "currency": self.currency,
            "phone": self.phone,
            "reference": self.reference,
            "account_reference": self.reference,
            "description": "chaos",
        }


@dataclass
class PaymentResult:
    spec: PaymentSpec
    payment_ids: set[str] = field(default_factory=set)
    statuses: list[str] = field(default_factory=list)  # HTTP status or error name per attempt
    answered: bool = False  # a 201 came back
    abandoned: str | None = None  # why the generator stopped trying without a 201
    errors: list[str] = field(default_factory=list)

    @property
    def retries(self) -> int:
        return max(len(self.statuses) - 1 - (1 if self.spec.twin else 0), 0)


def plan_payments(count: int, seed: int) -> list[PaymentSpec]:
    """``count`` payments, half M-Pesa and half MoMo, about 80 % aimed at a success."""
    rng = random.Random(f"chaos-plan:{seed}")
    specs: list[PaymentSpec] = []
    mpesa_n = momo_n = 0
    for index in range(count):
        provider = "mpesa" if index % 2 == 0 else "momo"
        failing = rng.random() < FAIL_SHARE
        if provider == "mpesa":
            u = mpesa_n
            mpesa_n += 1
            # 07PP MM EEEE: PP in 10..29 (Safaricom), (PP, MM) unique for the first 2,000
            # payers; EEEE a success ending 5000.. (never a simulator magic ending) or a
            # failing one. Distinct payers: the simulator refuses a second open prompt.
            ending = rng.choice(MPESA_FAILING_ENDINGS) if failing else f"{5000 + u // 2000:04d}"
            phone = f"07{10 + u % 20:02d}{(u // 20) % 100:02d}{ending}"
            amount, currency = str(rng.randint(1, 2_000)), "KES"
        else:
            u = momo_n
            momo_n += 1
            # MTN Uganda numbers: the EUR sandbox pays them.
            success = f"+25677{u % 10_000_000:07d}"
            phone = rng.choice(MOMO_FAILING_NUMBERS) if failing else success
            amount, currency = str(rng.randint(1, 500)), "EUR"
        specs.append(
            PaymentSpec(
                index=index,
                provider=provider,
                phone=phone,
                amount=amount,
                currency=currency,
                reference=f"c{index:07d}",
                key=f"chaos-{seed}-{index}",
                short_timeout=rng.random() < SHORT_TIMEOUT_SHARE,
                twin=rng.random() < TWIN_SHARE,
            )
        )
    return specs


def _retryable(response: httpx.Response) -> bool:
    if response.status_code >= 500:
        return True
    if response.status_code == 409:
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return False
        return bool(code == "idempotency_in_progress")
    return False


class LoadGenerator:
    def __init__(
        self,
        api_urls: Sequence[str],
        api_key: str,
        concurrency: int,
        budget_s: float,
        give_up_after_s: float = 60.0,
    ) -> None:
        self.api_urls = list(api_urls)
        self.api_key = api_key
        self.concurrency = concurrency
        self.budget_s = budget_s  # no new payment is started after this
        self.give_up_after_s = give_up_after_s
        self.done = 0
        self.started_at = 0.0
        self.finished_at = 0.0

    async def run(
        self,
        specs: Sequence[PaymentSpec],
        milestones: Sequence[tuple[float, Callable[[], Coroutine[Any, Any, None]]]] = (),
    ) -> list[PaymentResult]:
        """Post every payment; run each milestone (as a task) once that share of the payments
        has been answered or given up (the ones not reached run at the end). Payments not
        started within the budget are left unsent (``abandoned`` says so). Returns one result
        per spec, in plan order."""
        results = [PaymentResult(spec) for spec in specs]
        queue: asyncio.Queue[PaymentResult] = asyncio.Queue()
        for result in results:
            queue.put_nowait(result)
        pending = sorted(milestones, key=lambda m: m[0])
        side_tasks: list[asyncio.Task[None]] = []
        limits = httpx.Limits(max_connections=self.concurrency * 2 + 4)
        headers = {"Authorization": f"Bearer {self.api_key}"}
        self.started_at = time.monotonic()
        async with httpx.AsyncClient(headers=headers, limits=limits) as client:
            stop_at = self.started_at + self.budget_s

            async def worker() -> None:
                while True:
                    try:
                        result = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    if time.monotonic() > stop_at:
                        result.abandoned = UNSENT
                        continue
                    await self._one(client, result)
                    self.done += 1
                    while pending and self.done >= pending[0][0] * len(specs):
                        _, action = pending.pop(0)
                        side_tasks.append(asyncio.create_task(action()))

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
            self.finished_at = time.monotonic()
            side_tasks += [asyncio.create_task(action()) for _, action in pending]
            if side_tasks:
                await asyncio.gather(*side_tasks)
        return results

    async def _one(self, client: httpx.AsyncClient, result: PaymentResult) -> None:
        spec = result.spec
        url = self.api_urls[spec.index % len(self.api_urls)]
        if spec.twin:
            other = self.api_urls[(spec.index + 1) % len(self.api_urls)]
            await asyncio.gather(
                self._until_answered(client, result, url), self._post(client, result, other)
            )
        else:
            await self._until_answered(client, result, url)

    async def _until_answered(
        self, client: httpx.AsyncClient, result: PaymentResult, url: str
    ) -> None:
        deadline = time.monotonic() + self.give_up_after_s
        in_progress = 0
        delay = 0.25
        for attempt in range(MAX_ATTEMPTS):
            short = result.spec.short_timeout and attempt == 0
            response = await self._post(
                client, result, url, SHORT_TIMEOUT_S if short else REQUEST_TIMEOUT_S
            )
            if response is not None and response.status_code == 201:
                result.answered = True
                return
            if response is not None and not _retryable(response):
                result.abandoned = f"HTTP {response.status_code}: {response.text[:200]}"
                return
            if response is not None and response.status_code == 409:
                in_progress += 1
                if in_progress >= IN_PROGRESS_TRIES:
                    result.abandoned = "idempotency_in_progress"
                    return
            if time.monotonic() + delay > deadline:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)
        result.abandoned = result.abandoned or f"no answer after {len(result.statuses)} tries"

    async def _post(
        self,
        client: httpx.AsyncClient,
        result: PaymentResult,
        url: str,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> httpx.Response | None:
        spec = result.spec
        try:
            response = await client.post(
                f"{url}/v1/payments",
                json=spec.body(),
                headers={"Idempotency-Key": spec.key},
                timeout=httpx.Timeout(timeout_s, connect=5.0),
            )
        except httpx.HTTPError as exc:
            result.statuses.append(type(exc).__name__)
            return None
        result.statuses.append(str(response.status_code))
        if response.status_code == 201:
            body = response.json()
            result.payment_ids.add(str(body["id"]))
            if body.get("reference") != spec.reference:
                result.errors.append(f"answer for another reference: {body.get('reference')}")
        elif response.status_code < 500 and response.status_code != 409:
            result.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
        return response


def tally(results: Sequence[PaymentResult]) -> dict[str, Any]:
    """Counts for the summary."""
    answers: Counter[str] = Counter()
    for r in results:
        answers.update(r.statuses)
    return {
        "requests": sum(len(r.statuses) for r in results),
        "retries": sum(r.retries for r in results),
        "answers": dict(sorted(answers.items())),
        "short_timeouts": sum(r.spec.short_timeout for r in results),
        "twins": sum(r.spec.twin for r in results),
        "answered": sum(r.answered for r in results),
        "unsent": sum(r.abandoned == UNSENT for r in results),
        "abandoned": Counter(
            r.abandoned.split(":")[0] for r in results if r.abandoned and r.abandoned != UNSENT
        ),
    }
