"""The provider calls' transport, over real loopback sockets: what goes on the wire, what comes
back, and above all which failures count as "not sent" (safe to ask again) and which leave
a payment unknown."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from lipwa.providers.http import no_answer
from lipwa.providers.transport import AiohttpTransport

# What the fake provider does with a connection: it gets the reader and writer.
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Wire:
    """A TCP server on 127.0.0.1 that records the raw requests it reads."""

    def __init__(self, make_handler: Callable[[Wire], Handler]) -> None:
        self.requests: list[bytes] = []
        self.read_one = asyncio.Event()
        self.connections = 0
        self.handler = make_handler(self)

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        raw = head + (await reader.readexactly(length) if length else b"")
        self.requests.append(raw)
        self.read_one.set()
        return raw

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def wire(handler: Callable[[Wire], Handler]) -> AsyncIterator[tuple[Wire, str]]:
    state = Wire(handler)
    server = await asyncio.start_server(state.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield state, f"http://127.0.0.1:{port}"
    finally:
        server.close()


def answer(status: int, body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} Whatever", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def replying(*responses: bytes) -> Callable[[Wire], Handler]:
    """Answer each request on a connection with the next response (keep-alive)."""

    def make(state: Wire) -> Handler:
        queue = list(responses)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while queue:
                await state.read_request(reader)
                writer.write(queue.pop(0))
                await writer.drain()

        return handle

    return make


def client(base_url: str, **kwargs: object) -> httpx.AsyncClient:
    limits = kwargs.pop("limits", httpx.Limits(max_connections=10))
    assert isinstance(limits, httpx.Limits)
    return httpx.AsyncClient(
        base_url=base_url,
        transport=AiohttpTransport(limits=limits),
        headers={"User-Agent": "lipwa/test"},
        **kwargs,  # type: ignore[arg-type]
    )


async def test_a_request_and_its_answer_cross_the_wire_unchanged() -> None:
    reply = answer(
        201, b'{"CheckoutRequestID": "ws_CO_1"}', "Content-Type: application/json", "X-Seen: 1"
    )
    async with wire(replying(reply)) as (state, url), client(url) as http:
        response = await http.post(
            "/mpesa/stkpush/v1/processrequest?x=1",
            json={"Amount": 10, "PhoneNumber": "254708000005"},
            headers={"Authorization": "Bearer tok"},
        )
    assert response.status_code == 201
    assert response.json() == {"CheckoutRequestID": "ws_CO_1"}
    assert response.headers["x-seen"] == "1"
    head, _, body = state.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /mpesa/stkpush/v1/processrequest?x=1 HTTP/1.1"
    sent = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert sent["authorization"] == "Bearer tok"
    assert sent["content-type"] == "application/json"
    assert sent["user-agent"] == "lipwa/test"
    assert json.loads(body) == {"Amount": 10, "PhoneNumber": "254708000005"}


async def test_a_compressed_answer_is_decoded_once() -> None:
    packed = gzip.compress(b'{"ok": true}')
    reply = answer(200, packed, "Content-Encoding: gzip", "Content-Type: application/json")
    async with wire(replying(reply)) as (_, url), client(url) as http:
        response = await http.get("/status")
    assert response.json() == {"ok": True}


async def test_calls_reuse_one_kept_alive_connection() -> None:
    replies = [answer(200, b"{}") for _ in range(3)]
    async with wire(replying(*replies)) as (state, url), client(url) as http:
        for _ in range(3):
            assert (await http.get("/status")).status_code == 200
    assert len(state.requests) == 3
    assert state.connections == 1


async def test_a_refused_connection_is_not_sent() -> None:
    async with wire(replying()) as (_, url):
        pass  # the port is closed again
    async with client(url) as http:
        with pytest.raises(httpx.ConnectError) as caught:
            await http.post("/mpesa/stkpush/v1/processrequest", json={})
    assert no_answer(caught.value, "Daraja").sent is False


async def test_a_full_pool_is_not_sent() -> None:
    def holding(state: Wire) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await state.read_request(reader)
            await asyncio.sleep(5)

        return handle

    one = httpx.Limits(max_connections=1)
    timeout = httpx.Timeout(5.0, connect=0.2, pool=0.1)
    async with wire(holding) as (state, url), client(url, limits=one, timeout=timeout) as http:
        first = asyncio.create_task(http.get("/slow"))
        await state.read_one.wait()
        with pytest.raises(httpx.ConnectTimeout) as caught:
            await http.post("/mpesa/stkpush/v1/processrequest", json={})
        first.cancel()
    assert no_answer(caught.value, "Daraja").sent is False
    assert len(state.requests) == 1  # the second never reached the provider


def _after_reading(then: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> Callable[
    [Wire], Handler
]:
    def make(state: Wire) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await state.read_request(reader)
            await then(writer)

        return handle

    return make


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _half_a_body(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"Respon")
    await writer.drain()
    writer.close()


async def _silence(writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(5)


@pytest.mark.parametrize(
    ("after_reading", "error", "error_code"),
    [
        (_close, httpx.ReadError, "network_error"),
        (_half_a_body, httpx.ReadError, "network_error"),
        (_silence, httpx.ReadTimeout, "timeout"),
    ],
    ids=["closed-without-answer", "answer-cut-short", "no-answer-in-time"],
)
async def test_a_request_the_provider_read_is_never_called_not_sent(
    after_reading: Callable[[asyncio.StreamWriter], Awaitable[None]],
    error: type[httpx.RequestError],
    error_code: str,
) -> None:
    timeout = httpx.Timeout(0.3, connect=1.0)
    async with wire(_after_reading(after_reading)) as (state, url), client(
        url, timeout=timeout
    ) as http:
        with pytest.raises(error) as caught:
            response = await http.post("/mpesa/stkpush/v1/processrequest", json={"Amount": 1})
            response.json()
    verdict = no_answer(caught.value, "Daraja")
    assert verdict.sent is True  # the payment becomes unknown, never sent again blindly
    assert verdict.error_code == error_code
    assert len(state.requests) == 1
