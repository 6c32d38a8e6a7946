"""Shared fixtures of the simulator tests."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, ClassVar

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lipwa.simulator.core import SimSettings, Simulator
from lipwa.simulator.testing import serve_in_thread


# ----- MoMo ---------------------------------------------------------------------------------
def build_momo_app(sim: Simulator) -> Starlette:
    """MoMo's routes alone: they answer every method and path under MoMo's prefixes
    themselves, so the full app (tested separately) behaves the same on them."""
    from lipwa.simulator.momo import MoMo

    momo = MoMo(sim)
    app = Starlette(routes=momo.routes())
    app.state.sim, app.state.momo = sim, momo
    return app


class Receiver:
    """A real HTTP server on loopback that records every callback it gets."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

        async def record(request: Request) -> Response:
            raw = await request.body()
            with self.lock:
                self.calls.append({
                    "method": request.method,
                    "path": request.url.path,
                    "query": request.url.query,
                    "body": raw,
                    "at": time.time(),
                })
            return Response(status_code=200)

        self.app = Starlette(routes=[Route("/{path:path}", record, methods=["PUT", "POST"])])

    async def wait_for(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        # Polling: the calls are appended by the server thread, not by this event loop.
        while len(self.calls) < count and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return list(self.calls)


@pytest.fixture
def momo_receiver() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    with serve_in_thread(receiver.app) as url:
        yield receiver, url


class MoMoKit:
    """Drives the MoMo simulator the way a client does: tokens, headers, creating, polling."""

    PATHS: ClassVar[dict[str, tuple[str, str, str | None]]] = {
        "requesttopay": ("/collection/v1_0/requesttopay", "collection", "payer"),
        "requesttowithdraw": ("/collection/v1_0/requesttowithdraw", "collection", "payer"),
        "transfer": ("/disbursement/v1_0/transfer", "disbursement", "payee"),
        "deposit": ("/disbursement/v1_0/deposit", "disbursement", "payee"),
        "refund": ("/disbursement/v1_0/refund", "disbursement", None),
    }

    def __init__(self, sim: Simulator, app: Starlette, client: httpx.AsyncClient) -> None:
        self.sim, self.app, self.client = sim, app, client
        self.momo = app.state.momo
        self.creds = self.momo.credentials()
        self._tokens: dict[str, str] = {}

    def basic(self, user: str | None = None, key: str | None = None) -> str:
        raw = f"{user or self.creds['api_user']}:{key or self.creds['api_key']}"
        return "Basic " + base64.b64encode(raw.encode()).decode()

    def key(self, product: str) -> str:
        return str(self.creds["subscription_keys"][product])

    async def token(self, product: str = "collection") -> str:
        if product not in self._tokens:
            response = await self.client.post(
                f"/{product}/token/",
                headers={"Authorization": self.basic(),
                         "Ocp-Apim-Subscription-Key": self.key(product)},
            )
            assert response.status_code == 200, response.text
            self._tokens[product] = response.json()["access_token"]
        return self._tokens[product]

    async def headers(
        self, product: str, env: str = "sandbox", ref: str | None = None,
        callback: str | None = None,
    ) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {await self.token(product)}",
            "Ocp-Apim-Subscription-Key": self.key(product),
            "X-Target-Environment": env,
        }
        if ref:
            headers["X-Reference-Id"] = ref
        if callback is not None:
            headers["X-Callback-Url"] = callback
        return headers

    @staticmethod
    def body(party_field: str | None, party_id: str = "256772123456", amount: str = "100",
             currency: str = "EUR", **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"amount": amount, "currency": currency, "externalId": "ext-1",
                                "payerMessage": "Order 42", "payeeNote": "Thanks"}
        if party_field:
            body[party_field] = {"partyIdType": "MSISDN", "partyId": party_id}
        body.update(extra)
        return body

    async def create(
        self, op: str, party_id: str = "256772123456", *, amount: str = "100",
        currency: str = "EUR", env: str = "sandbox", callback: str | None = None,
        ref: str | None = None, **extra: Any,
    ) -> tuple[str, httpx.Response]:
        path, product, party_field = self.PATHS[op]
        ref = ref or str(uuid.uuid4())
        response = await self.client.post(
            path,
            headers=await self.headers(product, env, ref, callback),
            json=self.body(party_field, party_id, amount, currency, **extra),
        )
        return ref, response

    async def status(self, op: str, ref: str, env: str = "sandbox") -> httpx.Response:
        path, product, _ = self.PATHS[op]
        if product == "disbursement":  # read at v1_0, whichever version made it
            path = f"/disbursement/v1_0/{op}"
        return await self.client.get(f"{path}/{ref}", headers=await self.headers(product, env))

    async def settled(self, op: str, ref: str, env: str = "sandbox") -> dict[str, Any]:
        await self.sim.drain()
        response = await self.status(op, ref, env)
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
async def momo_sim() -> AsyncIterator[Simulator]:
    # The demo API user's providerCallbackHost follows this setting, so loopback callbacks pass.
    sim = Simulator(seed=7, settings=SimSettings(prompt_seconds=0.05,
                                                 momo_callback_host="127.0.0.1"))
    yield sim
    await sim.close()


@asynccontextmanager
async def momo_kit(sim: Simulator, app: Starlette | None = None) -> AsyncIterator[MoMoKit]:
    """A MoMoKit on an in-process client for ``sim`` (MoMo's routes alone unless ``app``)."""
    app = app or build_momo_app(sim)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://momo.test") as client:
        yield MoMoKit(sim, app, client)


@pytest.fixture
def momo_kit_for() -> Callable[..., AbstractAsyncContextManager[MoMoKit]]:
    """For tests that need several simulators (e.g. comparing seeds)."""
    return momo_kit


@pytest.fixture
async def momo(momo_sim: Simulator) -> AsyncIterator[MoMoKit]:
    async with momo_kit(momo_sim) as kit:
        yield kit


# ----- Daraja -------------------------------------------------------------------------------
def build_daraja_app(sim: Simulator) -> Starlette:
    """Daraja's routes alone (they answer every method and path under /mpesa/ and /oauth/)."""
    from lipwa.simulator.daraja import Daraja

    daraja = Daraja(sim)
    app = Starlette(routes=daraja.routes())
    app.state.sim, app.state.daraja = sim, daraja
    return app


def assert_daraja_error(
    response: httpx.Response, status: int, code: str, message: str | None = None
) -> dict[str, Any]:
    """Daraja's error shape: three strings, HTTP status = errorCode prefix."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"requestId", "errorCode", "errorMessage"}
    assert all(isinstance(v, str) for v in body.values())
    assert body["errorCode"] == code
    if message is not None:
        assert body["errorMessage"] == message
    return body


class DarajaReceiver:
    """A loopback merchant server: records JSON bodies; per-path replies can be scripted."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.replies: dict[str, tuple[int, Any, float]] = {}  # path -> (status, json, delay)
        self.url = ""
        from starlette.responses import JSONResponse

        async def record(request: Request) -> Response:
            self.calls.append(
                {"path": request.url.path, "body": await request.json(), "at": time.time()}
            )
            status, body, delay = self.replies.get(request.url.path, (200, {"ResultCode": 0}, 0))
            if delay:
                await asyncio.sleep(delay)
            return JSONResponse(body, status_code=status)

        self.app = Starlette(routes=[Route("/{path:path}", record, methods=["POST", "PUT"])])

    def bodies(self, path: str) -> list[Any]:
        return [c["body"] for c in self.calls if c["path"] == path]

    async def wait_for(self, path: str, count: int = 1, within: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + within
        # Polling: the list is filled by the receiver's own thread.
        while len(self.bodies(path)) < count and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return self.bodies(path)


@pytest.fixture(scope="session")
def _daraja_receiver_server() -> Iterator[DarajaReceiver]:
    receiver = DarajaReceiver()
    with serve_in_thread(receiver.app) as url:
        receiver.url = url
        yield receiver


@pytest.fixture
def daraja_receiver(_daraja_receiver_server: DarajaReceiver) -> DarajaReceiver:
    """One loopback server for the session (starting uvicorn per test is slow), reset per test."""
    _daraja_receiver_server.calls.clear()
    _daraja_receiver_server.replies.clear()
    return _daraja_receiver_server


class DarajaKit:
    """Drives the Daraja simulator as a client does: token, Password, bodies, polling."""

    STAMP = "20240101120000"

    def __init__(self, sim: Simulator, app: Starlette, client: httpx.AsyncClient) -> None:
        self.sim, self.app, self.client = sim, app, client
        self.daraja = app.state.daraja
        self.creds = self.daraja.credentials()
        self._token: str | None = None

    async def token(self) -> str:
        if self._token is None or self.sim.token_owner("mpesa", self._token) is None:
            response = await self.client.get(
                "/oauth/v1/generate",
                params={"grant_type": "client_credentials"},
                auth=(self.creds["consumer_key"], self.creds["consumer_secret"]),
            )
            assert response.status_code == 200, response.text
            self._token = response.json()["access_token"]
        return self._token

    async def post(self, path: str, body: Any, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or await self.token()}"}
        return await self.client.post(path, json=body, headers=headers)

    def password(self, code: str = "174379", passkey: str | None = None) -> str:
        raw = f"{code}{passkey or self.creds['paybill']['passkey']}{self.STAMP}"
        return base64.b64encode(raw.encode()).decode()

    def stk_body(self, phone: str = "254708374149", callback: str = "http://127.0.0.1:9/cb",
                 **over: Any) -> dict[str, Any]:
        body = {
            "BusinessShortCode": 174379, "Password": self.password(), "Timestamp": self.STAMP,
            "TransactionType": "CustomerPayBillOnline", "Amount": 10, "PartyA": phone,
            "PartyB": 174379, "PhoneNumber": phone, "CallBackURL": callback,
            "AccountReference": "INV001", "TransactionDesc": "Order 1",
        }
        body.update(over)
        return body

    def till_body(self, phone: str = "254708374149", **over: Any) -> dict[str, Any]:
        till = self.creds["till"]
        body = self.stk_body(
            phone, BusinessShortCode=till["store_number"], PartyB=till["till_number"],
            TransactionType="CustomerBuyGoodsOnline",
            Password=self.password(till["store_number"], till["passkey"]),
        )
        body.update(over)
        return body

    async def push(self, **over: Any) -> httpx.Response:
        return await self.post("/mpesa/stkpush/v1/processrequest", self.stk_body(**over))

    async def query(self, checkout_id: str, code: str = "174379",
                    passkey: str | None = None) -> httpx.Response:
        body = {"BusinessShortCode": code, "Password": self.password(code, passkey),
                "Timestamp": self.STAMP, "CheckoutRequestID": checkout_id}
        return await self.post("/mpesa/stkpushquery/v1/query", body)

    async def settle(self) -> None:
        """Let every prompt resolve and every callback go out."""
        await asyncio.sleep(self.sim.settings.prompt_seconds + 0.02)
        await self.sim.drain()

    def secured(self, base: str, **over: Any) -> dict[str, Any]:
        """A valid body for a secured API; ``base`` is the receiver URL for results."""
        b2c = self.creds["b2c"]
        body = {
            "InitiatorName": b2c["initiator_name"], "Initiator": b2c["initiator_name"],
            "SecurityCredential": b2c["security_credential"], "Remarks": "Remarks ok",
            "QueueTimeOutURL": f"{base}/timeout", "ResultURL": f"{base}/result",
        }
        body.update(over)
        return body

    def b2c_body(self, base: str, **over: Any) -> dict[str, Any]:
        body = self.secured(
            base, OriginatorConversationID=str(uuid.uuid4()), CommandID="BusinessPayment",
            Amount=100, PartyA=self.creds["b2c"]["shortcode"], PartyB="254705912645",
            Occassion="Payout",
        )
        body.pop("Initiator")
        body.update(over)
        return body


@pytest.fixture
async def daraja_sim() -> AsyncIterator[Simulator]:
    sim = Simulator(seed=11, settings=SimSettings(prompt_seconds=0.05,
                                                  c2b_validation_timeout_s=0.3))
    yield sim
    await sim.close()


@asynccontextmanager
async def daraja_kit(sim: Simulator) -> AsyncIterator[DarajaKit]:
    app = build_daraja_app(sim)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://daraja.test") as client:
        yield DarajaKit(sim, app, client)


@pytest.fixture
def daraja_kit_for() -> Callable[[Simulator], AbstractAsyncContextManager[DarajaKit]]:
    """For tests that need several simulators (e.g. comparing seeds)."""
    return daraja_kit


@pytest.fixture
async def daraja(daraja_sim: Simulator) -> AsyncIterator[DarajaKit]:
    async with daraja_kit(daraja_sim) as kit:
        yield kit
