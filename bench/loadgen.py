"""Load generator: its own process, httpx.AsyncClient, a fixed number of concurrent workers.

``python -m bench.loadgen '<spec json>' RESULT.json`` writes the result as one JSON object.
A spec names a target and either a request count or a duration:

* ``stk``: Daraja OAuth once, then STK pushes (valid Password) with callbacks to a receiver.
* ``rtp``: MoMo token once, then request-to-pay with callbacks to a receiver.
* ``payments``: ``POST /v1/payments`` on the gateway (or on the ceiling app, same request).

Every request is unique: its own idempotency key / reference id, and phone numbers spread
over 100,000 distinct values whose last digit (5) never selects a simulator failure outcome.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import itertools
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import percentiles

try:
    import sniffio  # noqa: F401
except ImportError:
    # httpcore asks for sniffio on every lock and event it makes; without it installed each
    # request repeats a failed import (a sys.path scan). A None entry fails it at once.
    sys.modules["sniffio"] = None  # type: ignore[assignment]

KENYA = dt.timezone(dt.timedelta(hours=3))
POOL_SIZE = 4  # connections per httpx client
# One request: (client, index) -> (HTTP status, key to match its callback or None).
Send = Callable[[httpx.AsyncClient, int], Awaitable[tuple[int, str | None]]]


@dataclass
class Spec:
    target: str  # stk | rtp | payments
    base_url: str
    concurrency: int = 32
    requests: int | None = None  # count mode ...
    duration_s: float | None = None  # ... or duration mode
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    phone_offset: int = 0
    callback_base: str = ""  # receiver URL for stk / rtp callbacks
    credentials: dict[str, Any] = field(default_factory=dict)  # GET /_sim/credentials
    api_key: str = ""  # gateway
    timeout_s: float = 30.0
    return_keys: bool = False  # report when each key was sent (callback lag)


def phone_suffix(i: int, offset: int = 0) -> str:
    """Six digits, ending in 5 (no simulator magic number ends in 5); 100,000 distinct."""
    return f"{(offset + i) % 100_000:05d}5"


def kenya_stamp() -> str:
    return dt.datetime.now(KENYA).strftime("%Y%m%d%H%M%S")


async def _stk(client: httpx.AsyncClient, spec: Spec) -> tuple[Send, int]:
    mpesa = spec.credentials["mpesa"]
    token = (
        (
            await client.get(
                "/oauth/v1/generate",
                params={"grant_type": "client_credentials"},
                auth=(mpesa["consumer_key"], mpesa["consumer_secret"]),
            )
        )
        .raise_for_status()
        .json()["access_token"]
    )
    code, passkey = mpesa["paybill"]["shortcode"], mpesa["paybill"]["passkey"]
    headers = {"Authorization": f"Bearer {token}"}

    async def send(client: httpx.AsyncClient, i: int) -> tuple[int, str | None]:
        stamp = kenya_stamp()
        phone = "254708" + phone_suffix(i, spec.phone_offset)
        key = f"{spec.run_id}-{i}"
        body = {
            "BusinessShortCode": code,
            "Password": base64.b64encode(f"{code}{passkey}{stamp}".encode()).decode(),
            "Timestamp": stamp,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": 1,
            "PartyA": phone,
            "PartyB": code,
            "PhoneNumber": phone,
            "CallBackURL": f"{spec.callback_base}/cb/stk/{key}",
            "AccountReference": f"b{i}"[:12],
            "TransactionDesc": "bench",
        }
        response = await client.post(
            "/mpesa/stkpush/v1/processrequest", json=body, headers=headers
        )
        return response.status_code, key

    return send, 200


async def _rtp(client: httpx.AsyncClient, spec: Spec) -> tuple[Send, int]:
    momo = spec.credentials["momo"]
    subscription = momo["subscription_keys"]["collection"]
    token = (
        (
            await client.post(
                "/collection/token/",
                auth=(momo["api_user"], momo["api_key"]),
                headers={"Ocp-Apim-Subscription-Key": subscription},
            )
        )
        .raise_for_status()
        .json()["access_token"]
    )
    headers = {
        "Authorization": f"Bearer {token}",
        "Ocp-Apim-Subscription-Key": subscription,
        "X-Target-Environment": momo["target_environment"],
    }

    async def send(client: httpx.AsyncClient, i: int) -> tuple[int, str | None]:
        ref = str(uuid.uuid4())
        body = {
            "amount": "10",
            "currency": momo["currency"],
            "externalId": f"b{i}",
            "payer": {
                "partyIdType": "MSISDN",
                "partyId": "25078" + phone_suffix(i, spec.phone_offset),
            },
            "payerMessage": "bench",
            "payeeNote": "bench",
        }
        response = await client.post(
            "/collection/v1_0/requesttopay",
            json=body,
            headers={
                **headers,
                "X-Reference-Id": ref,
                "X-Callback-Url": f"{spec.callback_base}/cb/momo/{ref}",
            },
        )
        return response.status_code, ref

    return send, 202


async def _payments(client: httpx.AsyncClient, spec: Spec) -> tuple[Send, int]:
    auth = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}

    async def send(client: httpx.AsyncClient, i: int) -> tuple[int, str | None]:
        body = {
            "amount": "10",
            "currency": "KES",
            "phone": "0708" + phone_suffix(i, spec.phone_offset),
            "reference": f"b{i}",
        }
        response = await client.post(
            "/v1/payments",
            json=body,
            headers={**auth, "Idempotency-Key": f"{spec.run_id}-{i}"},
        )
        return response.status_code, None

    return send, 201


TARGETS = {"stk": _stk, "rtp": _rtp, "payments": _payments}


async def run(spec: Spec) -> dict[str, Any]:
    if (spec.requests is None) == (spec.duration_s is None):
        raise ValueError("give exactly one of requests or duration_s")
    # Several small pools, not one big one: httpcore's pool bookkeeping costs O(connections²)
    # per request, so one 64-connection pool burns ~3x the CPU of sixteen 4-connection pools.
    pools = max(spec.concurrency // POOL_SIZE, 1)
    limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=spec.base_url, limits=limits, timeout=spec.timeout_s)
            )
            for _ in range(pools)
        ]
        send, ok_status = await TARGETS[spec.target](clients[0], spec)  # tokens: once
        counter = itertools.count()
        latencies: list[float] = []
        statuses: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        sent: dict[str, float] = {}  # key -> wall time the request left
        deadline = time.monotonic() + (spec.duration_s or 0.0)

        async def worker(number: int) -> None:
            client = clients[number % pools]
            while True:
                i = next(counter)
                if spec.requests is not None and i >= spec.requests:
                    return
                if spec.duration_s is not None and time.monotonic() >= deadline:
                    return
                sent_at = time.time()
                started = time.perf_counter()
                try:
                    status, key = await send(client, i)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                statuses[str(status)] += 1
                if status == ok_status:
                    latencies.append((time.perf_counter() - started) * 1000)
                    if key is not None and spec.return_keys:
                        sent[key] = sent_at

        wall_start = time.time()
        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(spec.concurrency)))
        elapsed = time.perf_counter() - started
        wall_end = time.time()
    ok = statuses.get(str(ok_status), 0)
    return {
        "loadgen": "httpx",
        "target": spec.target,
        "concurrency": spec.concurrency,
        "sent": sum(statuses.values()) + sum(errors.values()),
        "ok": ok,
        "ok_status": ok_status,
        "statuses": dict(statuses),
        "errors": dict(errors),
        "elapsed_s": round(elapsed, 3),
        "wall_start": wall_start,
        "wall_end": wall_end,
        "throughput": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": percentiles(latencies),
        "sent_at": sent,
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    spec = Spec(**json.loads(args[0]))
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    with open(args[1], "w") as out:  # a file: stdout may be non-blocking under uvloop
        json.dump(result, out)


if __name__ == "__main__":
    main()
