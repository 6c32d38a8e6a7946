"""A tiny callback receiver (bare ASGI, no framework) for the simulator benchmark.

Serve with ``python -m uvicorn --factory bench.receiver:create_app``. Any request under
``/cb/<kind>/<key>`` is answered 200 and its arrival time kept per key; ``GET /stats`` tells
how many arrived (``?keys=1`` adds the arrival time of each key), ``POST /reset`` forgets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_OK = json.dumps({"ResultCode": 0, "ResultDesc": "Accepted"}).encode()


class Receiver:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.deliveries = 0
        self.first: float | None = None
        self.last: float | None = None
        self.arrived: dict[str, float] = {}
        self.methods: dict[str, int] = {}

    def stats(self, with_keys: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "deliveries": self.deliveries,
            "unique": len(self.arrived),
            "first": self.first,
            "last": self.last,
            "methods": self.methods,
        }
        if with_keys:
            out["arrived"] = self.arrived
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        more = True
        while more:  # read (and drop) the body
            message = await receive()
            more = bool(message.get("more_body", False))
        path: str = scope["path"]
        status, body = 200, _OK
        if path.startswith("/cb/"):
            now = time.time()
            self.deliveries += 1
            self.first = self.first or now
            self.last = now
            self.arrived.setdefault(path.rsplit("/", 1)[-1], now)
            method = scope["method"]
            self.methods[method] = self.methods.get(method, 0) + 1
        elif path == "/stats":
            body = json.dumps(self.stats(b"keys=1" in scope.get("query_string", b""))).encode()
        elif path == "/reset":
            self.reset()
        else:
            status, body = 404, b'{"error": "not found"}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def create_app() -> Receiver:
    return Receiver()
