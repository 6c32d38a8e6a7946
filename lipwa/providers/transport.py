"""httpx's interface over aiohttp's connection pool, for the calls to the providers.

httpx's own pool (httpcore) spends CPU on every request in proportion to the connections it
holds: with 32 payments in flight, about 3 ms of CPU per provider call on the 2-core
reference machine, against about 0.3 ms through aiohttp (``bench/README.md``). The clients keep
httpx's interface (requests, timeouts, test transports); only the wire goes through aiohttp.

What matters most here is the failure mapping, which decides whether a payment may be asked
for again: only a failure before the request left this process becomes one of the errors
``lipwa.providers.http.NOT_SENT`` lists (connect error or timeout, a full pool); everything
after that (a reset, a disconnect, a read timeout, a broken body) is an error that leaves the
payment ``unknown``.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx

CHUNK_BYTES = 64 * 1024


@contextmanager
def _mapped_errors(request: httpx.Request) -> Iterator[None]:
    """aiohttp's failures as the httpx errors that mean the same for a sent payment."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:  # connecting, or waiting for a pooled one
        raise httpx.ConnectTimeout(str(exc) or "connect timeout", request=request) from exc
    except aiohttp.ClientConnectorError as exc:  # refused, DNS, TLS handshake: nothing sent
        raise httpx.ConnectError(str(exc) or "connect failed", request=request) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(str(exc), request=request) from exc
    except (aiohttp.ServerTimeoutError, TimeoutError) as exc:  # sent; no answer in time
        raise httpx.ReadTimeout(str(exc) or "read timeout", request=request) from exc
    except (aiohttp.ClientError, OSError) as exc:  # sent, or partly: the answer was lost
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors(self._request):
            async for chunk in self._response.content.iter_chunked(CHUNK_BYTES):
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (made on first use, in the running event loop) behind httpx."""

    def __init__(self, *, verify: bool = True, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits()
        self._ssl: ssl.SSLContext | bool = False  # verify=False: no certificate checks
        if verify:
            self._ssl = httpx.create_ssl_context()  # httpx's: certifi's CA bundle
        self._limit = limits.max_connections or 0  # 0: aiohttp's "no limit"
        self._keepalive_s = limits.keepalive_expiry or 15.0
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._limit, keepalive_timeout=self._keepalive_s, ssl=self._ssl
                ),
                # httpx decodes the body and follows redirects itself; proxies from the
                # environment, as httpx does
                auto_decompress=False,
                trust_env=True,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout: dict[str, float | None] = request.extensions.get("timeout", {})
        connect, pool = timeout.get("connect"), timeout.get("pool")
        body = await request.aread()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        with _mapped_errors(request):
            response = await self._open().request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                compress=None,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    # the pool wait and the connect together: both are "not sent"
                    connect=None if connect is None or pool is None else connect + pool,
                    sock_connect=connect,
                    sock_read=timeout.get("read"),
                ),
            )
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, request),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
