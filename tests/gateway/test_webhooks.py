"""Signed webhooks out: endpoints, delivery with retries, redelivery, scoping.

The gateway runs no worker here; each test runs the delivery job itself with a container built
on the test database (short back-off), against a small receiver served on loopback.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from typer.testing import CliRunner

from lipwa.cli import app as cli_app
from lipwa.container import Container
from lipwa.services.webhooks import Claim, DeliveryPolicy, WebhookSender
from lipwa.simulator.testing import serve_in_thread
from lipwa.vault import generate_key_text
from lipwa.webhooks import WebhookVerificationError, verify
from tests.gateway.conftest import Gateway, Merchant, db_execute, db_rows


# ----- a merchant's webhook receiver -----------------------------------------------------------
@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event_type(self) -> str:
        return self.headers["lipwa-event-type"]


@dataclass
class Receiver:
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    # Status codes to answer, in order; 200 once they run out.
    script: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def types(self) -> list[str]:
        with self.lock:
            return [r.event_type for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    # A path of its own: a later test's receiver may get an earlier one's port.
    path = f"/hooks/{uuid.uuid4().hex}"

    async def hook(request: Request) -> Response:
        body = await request.body()
        with state.lock:
            state.requests.append(Received(dict(request.headers), body))
            status = state.script.pop(0) if state.script else 200
        return Response("nope" if status >= 300 else "ok", status_code=status)

    async def elsewhere(request: Request) -> Response:
        return Response(status_code=410)

    app = Starlette(routes=[Route(path, hook, methods=["POST"]), Route("/{rest:path}", elsewhere)])
    with serve_in_thread(app) as base:
        state.url = base + path
        yield state


# ----- helpers ----------------------------------------------------------------------------------
FAST = {"webhook_retry_base_s": 0.05, "webhook_retry_cap_s": 0.2}


def run_deliveries(
    gateway: Gateway, until: Callable[[], bool], timeout: float = 15.0, **overrides: Any
) -> None:
    """Run the delivery job (as a worker would) until ``until()`` holds."""
    settings = gateway.settings.model_copy(update={**FAST, **overrides})

    async def go() -> None:
        container = Container.build(settings)
        deadline = time.monotonic() + timeout
        try:
            while not until():
                assert time.monotonic() < deadline, "deliveries did not get there in time"
                await container.webhooks.run_once()
                await asyncio.sleep(0.02)
        finally:
            await container.close()

    asyncio.run(go())


def drain(gateway: Gateway, rounds: int = 3) -> None:
    """A few more rounds, to show nothing else goes out."""
    left = [rounds]

    def done() -> bool:
        left[0] -= 1
        return left[0] < 0

    run_deliveries(gateway, done)


def add_endpoint(client: httpx.Client, url: str, types: list[str] | None = None) -> dict[str, Any]:
    response = client.post(
        "/v1/webhook-endpoints",
        json={"url": url, "event_types": types or ["payment.succeeded", "payment.failed"]},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def paid_event(merchant: Merchant) -> dict[str, Any]:
    """Make a payment that succeeds; return its payment.succeeded event."""
    payment = merchant.pay(amount="10", currency="KES", phone="0708374149").json()
    assert merchant.wait_final(payment["id"])["status"] == "succeeded"
    with merchant.client() as c:
        events = c.get(
            "/v1/events", params={"resource_id": payment["id"], "type": "payment.succeeded"}
        ).json()["data"]
    assert len(events) == 1
    event: dict[str, Any] = events[0]
    return event


def deliveries(merchant: Merchant, event_id: str) -> list[dict[str, Any]]:
    with merchant.client() as c:
        response = c.get(f"/v1/events/{event_id}/deliveries")
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def live_client(merchant: Merchant) -> httpx.Client:
    with merchant.gateway.admin() as admin:
        key = admin.post(f"/admin/v1/merchants/{merchant.id}/api-keys", json={"mode": "live"})
    return merchant.gateway.client(key.json()["key"])


# ----- endpoints --------------------------------------------------------------------------------
def test_secret_is_shown_once_and_stored_sealed(merchant: Merchant, database_url: str) -> None:
    with merchant.client() as c:
        created = add_endpoint(c, "http://127.0.0.1:9/hook", ["*"])
        secret = created["secret"]
        assert secret.startswith("whsec_") and len(secret) > 30
        assert created["id"].startswith("we_") and created["status"] == "enabled"
        assert created["livemode"] is False and created["event_types"] == ["*"]
        read = c.get(f"/v1/webhook-endpoints/{created['id']}")
        listed = c.get("/v1/webhook-endpoints")
    assert read.status_code == 200 and "secret" not in read.json()
    assert [e["id"] for e in listed.json()["data"]] == [created["id"]]
    assert secret not in read.text + listed.text
    rows = db_rows(database_url, "SELECT * FROM webhook_endpoints WHERE id = :i", i=created["id"])
    assert secret not in str(rows)
    assert rows[0]["secrets_sealed"].startswith("lw1.v1.")


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"url": "ftp://example.com/x", "event_types": ["*"]}, "invalid_url", "url"),
        ({"url": "not a url", "event_types": ["*"]}, "invalid_url", "url"),
        ({"url": "http://203.0.113.7:99999/hook", "event_types": ["*"]}, "invalid_url", "url"),
        ({"url": "http://shop.example.com:abc/hook", "event_types": ["*"]}, "invalid_url", "url"),
        ({"url": "http://[::1/hook", "event_types": ["*"]}, "invalid_url", "url"),
        (
            {"url": "http://127.0.0.1:9/", "event_types": ["payment.refunded"]},
            "parameter_invalid",
            "event_types",
        ),
        ({"url": "http://127.0.0.1:9/", "event_types": []}, "parameter_invalid", "event_types"),
        ({"event_types": ["*"]}, "parameter_invalid", "url"),
        (
            {"url": "http://127.0.0.1:9/", "event_types": ["*"], "secret": "mine"},
            "parameter_invalid",
            "secret",
        ),
    ],
)
def test_bad_endpoint_gets_a_clear_error_and_changes_nothing(
    merchant: Merchant, body: dict[str, Any], code: str, param: str
) -> None:
    with merchant.client() as c:
        response = c.post("/v1/webhook-endpoints", json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            code,
            param,
        )
        assert c.get("/v1/webhook-endpoints").json()["data"] == []


def test_live_endpoints_need_public_https(merchant: Merchant) -> None:
    with live_client(merchant) as live:
        plain = live.post(
            "/v1/webhook-endpoints",
            json={"url": "http://shop.example.com/hook", "event_types": ["*"]},
        )
        local = live.post(
            "/v1/webhook-endpoints", json={"url": "https://127.0.0.1/hook", "event_types": ["*"]}
        )
        ok = live.post(
            "/v1/webhook-endpoints",
            json={"url": "https://shop.example.com/hook", "event_types": ["*"]},
        )
    assert plain.json()["error"]["code"] == "https_required"
    assert local.json()["error"]["code"] == "internal_url"
    assert ok.status_code == 201 and ok.json()["livemode"] is True


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Names this test resolves itself (no real DNS needed): name -> address."""
    names: dict[str, str] = {}
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return names


def test_live_endpoints_refuse_every_way_of_naming_an_internal_host(
    merchant: Merchant, dns: dict[str, str]
) -> None:
    dns["hooks.attacker.example"] = "169.254.169.254"  # a merchant-controlled name, inside
    hosts = [
        # What the resolver reads as 127.0.0.1 (and 0 as 0.0.0.0, this machine on Linux).
        *("127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0"),
        *("[::1]", "[::ffff:127.0.0.1]", "10.0.0.5", "hooks.attacker.example"),
    ]
    with live_client(merchant) as live:
        for host in hosts:
            made = live.post(
                "/v1/webhook-endpoints", json={"url": f"https://{host}/hook", "event_types": ["*"]}
            )
            assert made.status_code == 400, (host, made.text)
            assert made.json()["error"]["code"] == "internal_url", host
        assert live.get("/v1/webhook-endpoints").json()["data"] == []


def add_live_delivery(database_url: str, merchant: Merchant, endpoint_id: str) -> str:
    """A live event owed to the endpoint, due now; its event id."""
    from lipwa.clock import utcnow
    from lipwa.domain.ids import new_id
    from lipwa.store.db import make_engine, make_sessionmaker
    from lipwa.store.tables import Event, WebhookDelivery

    event_id, now = new_id("evt"), utcnow()

    async def run() -> None:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                session.add(Event(
                    id=event_id, merchant_id=merchant.id, mode="live", type="payment.succeeded",
                    resource_id="pay_live", data={}, created_at=now,
                ))  # fmt: skip
                await session.flush()
                session.add(WebhookDelivery(
                    id=new_id("whd"), merchant_id=merchant.id, event_id=event_id,
                    endpoint_id=endpoint_id, status="pending", attempts=0, next_attempt_at=now,
                    created_at=now,
                ))  # fmt: skip
        finally:
            await engine.dispose()

    asyncio.run(run())
    return event_id


def deliver_through(gateway: Gateway, event_id: str, transport: httpx.MockTransport) -> None:
    """Claim and deliver the event's delivery with a sender whose HTTP goes to ``transport``."""

    async def go() -> None:
        container = Container.build(gateway.settings)
        http = httpx.AsyncClient(transport=transport)
        sender = WebhookSender(container.sessions, container.vault, http=http)
        try:
            for _ in range(50):
                ours = [c for c in await sender.claim() if c.event.id == event_id]
                if ours:
                    await sender.deliver(ours[0])
                    return
            pytest.fail("the delivery was never claimed")
        finally:
            await http.aclose()
            await container.close()

    asyncio.run(go())


def test_a_live_delivery_goes_to_the_address_checked_and_never_inside(
    merchant: Merchant, gateway: Gateway, database_url: str, dns: dict[str, str]
) -> None:
    dns["hooks.shop.example"] = "93.184.216.34"
    with live_client(merchant) as live:
        endpoint = add_endpoint(live, "https://hooks.shop.example:8443/hook", ["*"])
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    delivered = add_live_delivery(database_url, merchant, endpoint["id"])
    deliver_through(gateway, delivered, httpx.MockTransport(answer))
    [request] = sent  # pinned to the address checked; TLS still checks the name
    assert (request.url.host, request.url.port) == ("93.184.216.34", 8443)
    assert request.headers["host"] == "hooks.shop.example:8443"
    assert request.extensions["sni_hostname"] == "hooks.shop.example"

    dns["hooks.shop.example"] = "127.0.0.1"  # the name now points inside (DNS rebinding)
    refused = add_live_delivery(database_url, merchant, endpoint["id"])
    deliver_through(gateway, refused, httpx.MockTransport(answer))
    assert len(sent) == 1
    with live_client(merchant) as live:
        [delivery] = live.get(f"/v1/events/{refused}/deliveries").json()["data"]
        live.delete(f"/v1/webhook-endpoints/{endpoint['id']}")
    assert delivery["status"] == "pending" and delivery["attempt_count"] == 1
    assert "local or private address" in delivery["last_error"]


def test_idempotency_key_replays_the_create(merchant: Merchant) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["*"]}
    with merchant.client() as c:
        first = c.post("/v1/webhook-endpoints", json=body, headers=key)
        again = c.post("/v1/webhook-endpoints", json=body, headers=key)
        other = c.post("/v1/webhook-endpoints", json={**body, "description": "x"}, headers=key)
        listed = c.get("/v1/webhook-endpoints").json()["data"]
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(listed) == 1


# ----- delivery ---------------------------------------------------------------------------------
def test_payment_succeeded_is_delivered_once_and_signed(
    merchant: Merchant, receiver: Receiver, gateway: Gateway, database_url: str
) -> None:
    with merchant.client() as c:
        secret = add_endpoint(c, receiver.url)["secret"]
    event = paid_event(merchant)
    run_deliveries(gateway, lambda: len(receiver.requests) >= 1)
    drain(gateway)

    assert receiver.types() == ["payment.succeeded"]  # not payment.created: not subscribed
    got = receiver.requests[0]
    assert got.headers["lipwa-event-id"] == event["id"]
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == "Lipwa-Webhooks/0.1"
    assert got.headers["lipwa-signature"].count("v1=") == 1
    assert verify(got.body, got.headers["lipwa-signature"], secret) == event
    with pytest.raises(WebhookVerificationError):
        verify(got.body, got.headers["lipwa-signature"], "whsec_someone_else")

    [delivery] = deliveries(merchant, event["id"])
    assert delivery["status"] == "delivered" and delivery["attempt_count"] == 1
    assert delivery["attempts"][0]["status_code"] == 200
    rows = db_rows(
        database_url,
        "SELECT status, attempts FROM webhook_deliveries WHERE event_id = :e",
        e=event["id"],
    )
    assert rows == [{"status": "delivered", "attempts": 1}]


def test_payout_events_can_be_subscribed_to_by_name(
    merchant: Merchant, receiver: Receiver, gateway: Gateway
) -> None:
    with merchant.client() as c:
        add_endpoint(c, receiver.url, ["payout.succeeded", "refund.failed"])
        unknown = {"url": receiver.url, "event_types": ["payout.exploded"]}
        refused = c.post("/v1/webhook-endpoints", json=unknown)
        assert refused.status_code == 400
        created = c.post("/v1/payouts", headers={"Idempotency-Key": str(uuid.uuid4())}, json={
            "amount": "150", "currency": "KES", "phone": "0708374149", "reference": "po-hook",
            "reason": "Cashback"}).json()  # fmt: skip
    deadline = time.monotonic() + 20
    with merchant.client() as c:
        while c.get(f"/v1/payouts/{created['id']}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the payout did not succeed in time"
            time.sleep(0.1)
    run_deliveries(gateway, lambda: len(receiver.requests) >= 1)
    drain(gateway)
    assert receiver.types() == ["payout.succeeded"]  # not payout.created: not subscribed


def test_a_failed_attempt_is_retried_then_delivered(
    merchant: Merchant, receiver: Receiver, gateway: Gateway
) -> None:
    receiver.script = [500, 503]
    with merchant.client() as c:
        secret = add_endpoint(c, receiver.url)["secret"]
    event = paid_event(merchant)
    run_deliveries(gateway, lambda: len(receiver.requests) >= 3)
    drain(gateway)

    assert receiver.types() == ["payment.succeeded"] * 3
    for got in receiver.requests:  # every attempt is freshly signed, same event
        assert verify(got.body, got.headers["lipwa-signature"], secret)["id"] == event["id"]
    [delivery] = deliveries(merchant, event["id"])
    assert delivery["status"] == "delivered" and delivery["attempt_count"] == 3
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 200]
    assert delivery["attempts"][0]["error"] == "HTTP 500: nope"
    assert delivery["attempts"][2]["error"] is None
    assert all(a["duration_ms"] >= 0 for a in delivery["attempts"])


def test_delivery_gives_up_after_its_window(
    merchant: Merchant, receiver: Receiver, gateway: Gateway
) -> None:
    receiver.script = [500] * 1000
    with merchant.client() as c:
        add_endpoint(c, receiver.url)
    event = paid_event(merchant)

    def failed() -> bool:
        return deliveries(merchant, event["id"])[0]["status"] == "failed"

    run_deliveries(gateway, failed, webhook_give_up_after_s=1.5)
    [delivery] = deliveries(merchant, event["id"])
    assert delivery["next_attempt_at"] is None and delivery["last_status_code"] == 500
    assert delivery["attempt_count"] == len(delivery["attempts"]) == len(receiver.requests) >= 2


def test_unreachable_endpoint_logs_the_error(merchant: Merchant, gateway: Gateway) -> None:
    with merchant.client() as c:
        endpoint = add_endpoint(c, "http://127.0.0.1:9/closed")
    event = paid_event(merchant)
    run_deliveries(gateway, lambda: bool(deliveries(merchant, event["id"])[0]["attempts"]))
    [delivery] = deliveries(merchant, event["id"])
    assert delivery["status"] == "pending" and delivery["last_status_code"] is None
    assert "ConnectError" in delivery["attempts"][0]["error"]
    with merchant.client() as c:  # tidy: nothing owed to a closed port in later tests
        c.delete(f"/v1/webhook-endpoints/{endpoint['id']}")
    assert deliveries(merchant, event["id"])[0]["status"] == "failed"


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/hook", "http://127.0.0.1:abc/hook"])
def test_a_url_that_cannot_even_be_sent_to_is_a_failed_attempt_then_given_up(
    merchant: Merchant, gateway: Gateway, database_url: str, url: str
) -> None:
    with merchant.client() as c:
        endpoint = add_endpoint(c, "http://127.0.0.1:9/hook")
    # Stored before such URLs were refused at creation.
    db_execute(database_url, "UPDATE webhook_endpoints SET url = :u WHERE id = :i",
               u=url, i=endpoint["id"])  # fmt: skip
    event = paid_event(merchant)

    def failed() -> bool:
        return deliveries(merchant, event["id"])[0]["status"] == "failed"

    run_deliveries(gateway, failed, webhook_give_up_after_s=1.0)
    [delivery] = deliveries(merchant, event["id"])
    assert delivery["attempt_count"] == len(delivery["attempts"]) >= 1
    assert all(a["error"] and a["status_code"] is None for a in delivery["attempts"])
    with merchant.client() as c:
        c.delete(f"/v1/webhook-endpoints/{endpoint['id']}")


def test_redeliver_sends_again_and_reaches_new_endpoints(
    merchant: Merchant, receiver: Receiver, gateway: Gateway
) -> None:
    with merchant.client() as c:
        first = add_endpoint(c, receiver.url)
        event = paid_event(merchant)
        run_deliveries(gateway, lambda: len(receiver.requests) == 1)
        # An endpoint made after the event had no delivery for it; redeliver makes one.
        later = add_endpoint(c, receiver.url, ["payment.created"])
        again = c.post(f"/v1/events/{event['id']}/redeliver")
        assert again.status_code == 200, again.text
        assert [d["endpoint_id"] for d in again.json()["data"]] == [first["id"]]
        assert again.json()["data"][0]["status"] == "pending"
        run_deliveries(gateway, lambda: len(receiver.requests) == 2)
        to_later = c.post(f"/v1/events/{event['id']}/redeliver", json={"endpoint_id": later["id"]})
        assert to_later.status_code == 200, to_later.text
        run_deliveries(gateway, lambda: len(receiver.requests) == 3)
    drain(gateway)

    assert len(receiver.requests) == 3
    secrets = [first["secret"], first["secret"], later["secret"]]
    for got, secret in zip(receiver.requests, secrets, strict=True):
        assert verify(got.body, got.headers["lipwa-signature"], secret)["id"] == event["id"]
    by_endpoint = {d["endpoint_id"]: d for d in deliveries(merchant, event["id"])}
    assert by_endpoint[first["id"]]["attempt_count"] == 2
    assert by_endpoint[later["id"]]["status"] == "delivered"


def test_rotation_signs_with_both_secrets_for_a_while(
    merchant: Merchant, receiver: Receiver, gateway: Gateway
) -> None:
    with merchant.client() as c:
        endpoint = add_endpoint(c, receiver.url)
        rotated = c.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret")
        assert rotated.status_code == 200, rotated.text
        new_secret = rotated.json()["secret"]
        assert new_secret != endpoint["secret"]
        assert rotated.json()["previous_secret_expires_at"]
        assert "secret" not in c.get(f"/v1/webhook-endpoints/{endpoint['id']}").json()

        event = paid_event(merchant)
        run_deliveries(gateway, lambda: len(receiver.requests) == 1)
        got = receiver.requests[0]
        assert got.headers["lipwa-signature"].count("v1=") == 2
        for secret in (endpoint["secret"], new_secret):
            assert verify(got.body, got.headers["lipwa-signature"], secret)["id"] == event["id"]

        # A leaked secret is retired at once.
        replacement = c.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
            json={"expire_previous_in_s": 0},
        ).json()
        c.post(f"/v1/events/{event['id']}/redeliver")
        run_deliveries(gateway, lambda: len(receiver.requests) == 2)
    got = receiver.requests[1]
    # Still the first secret's 24 h overlap, plus the new one; not the retired second one.
    assert got.headers["lipwa-signature"].count("v1=") == 2
    assert verify(got.body, got.headers["lipwa-signature"], replacement["secret"])
    with pytest.raises(WebhookVerificationError):
        verify(got.body, got.headers["lipwa-signature"], new_secret)


def test_a_disabled_endpoint_gets_nothing(
    merchant: Merchant, receiver: Receiver, gateway: Gateway
) -> None:
    with merchant.client() as c:
        endpoint = add_endpoint(c, receiver.url, ["*"])
        gone = c.delete(f"/v1/webhook-endpoints/{endpoint['id']}")
        assert gone.status_code == 200 and gone.json()["status"] == "disabled"
        event = paid_event(merchant)
        redeliver = c.post(
            f"/v1/events/{event['id']}/redeliver", json={"endpoint_id": endpoint["id"]}
        )
        rotate = c.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret")
    drain(gateway)
    assert receiver.requests == []
    assert deliveries(merchant, event["id"]) == []
    assert redeliver.json()["error"]["code"] == "endpoint_disabled"
    assert rotate.json()["error"]["code"] == "endpoint_disabled"


# ----- scoping ----------------------------------------------------------------------------------
def test_endpoints_are_scoped_to_merchant_and_mode(
    merchant: Merchant, merchant_factory: Callable[..., Merchant]
) -> None:
    other = merchant_factory()
    with live_client(merchant) as live, other.client() as theirs:
        live_endpoint = live.post(
            "/v1/webhook-endpoints",
            json={"url": "https://shop.example.com/hook", "event_types": ["*"]},
        ).json()
        their_endpoint = add_endpoint(theirs, "http://127.0.0.1:9/theirs", ["*"])
        their_event = paid_event(other)
    with merchant.client() as mine:
        event = paid_event(merchant)
        for foreign in (live_endpoint["id"], their_endpoint["id"]):
            responses = [
                mine.get(f"/v1/webhook-endpoints/{foreign}"),
                mine.delete(f"/v1/webhook-endpoints/{foreign}"),
                mine.post(f"/v1/webhook-endpoints/{foreign}/rotate-secret"),
                mine.post(f"/v1/events/{event['id']}/redeliver", json={"endpoint_id": foreign}),
            ]
            for response in responses:
                assert response.status_code == 404, response.text
                assert response.json()["error"]["code"] == "resource_missing"
        assert mine.get("/v1/webhook-endpoints").json()["data"] == []
        assert mine.get(f"/v1/events/{their_event['id']}/deliveries").status_code == 404
        assert mine.post(f"/v1/events/{their_event['id']}/redeliver").status_code == 404
    with live_client(merchant) as live:
        assert [e["id"] for e in live.get("/v1/webhook-endpoints").json()["data"]] == [
            live_endpoint["id"]
        ]
        assert live.get(f"/v1/events/{event['id']}/deliveries").status_code == 404
    with other.client() as theirs:  # untouched, and tidy for later tests
        assert theirs.get(f"/v1/webhook-endpoints/{their_endpoint['id']}").json()["status"] == (
            "enabled"
        )
        theirs.delete(f"/v1/webhook-endpoints/{their_endpoint['id']}")


# ----- operators --------------------------------------------------------------------------------
def test_cli_redelivers_and_shows_the_attempt_log(
    merchant: Merchant, receiver: Receiver, gateway: Gateway
) -> None:
    with merchant.client() as c:
        endpoint = add_endpoint(c, receiver.url)
    event = paid_event(merchant)
    run_deliveries(gateway, lambda: len(receiver.requests) == 1)
    settings = gateway.settings
    assert settings.encryption_keys is not None
    env = {
        "LIPWA_DATABASE_URL": settings.database_url,
        "LIPWA_ENCRYPTION_KEYS": settings.encryption_keys.get_secret_value(),
        "COLUMNS": "200",
    }
    runner = CliRunner()
    shown = runner.invoke(cli_app, ["events", "deliveries", event["id"]], env=env)
    assert shown.exit_code == 0, shown.output
    assert endpoint["id"] in shown.output and "delivered" in shown.output

    queued = runner.invoke(
        cli_app, ["events", "redeliver", event["id"], "--endpoint", endpoint["id"]], env=env
    )
    assert queued.exit_code == 0, queued.output
    assert "Queued 1" in queued.output
    run_deliveries(gateway, lambda: len(receiver.requests) == 2)

    missing = runner.invoke(cli_app, ["events", "deliveries", "evt_nope"], env=env)
    assert missing.exit_code == 1 and "resource_missing" in missing.output
    assert endpoint["secret"] not in shown.output + queued.output


def test_webhook_secrets_never_reach_the_logs(
    merchant: Merchant, receiver: Receiver, gateway: Gateway
) -> None:
    receiver.script = [500]
    with merchant.client() as c:
        created = add_endpoint(c, receiver.url)
        rotated = c.post(f"/v1/webhook-endpoints/{created['id']}/rotate-secret").json()
    paid_event(merchant)
    run_deliveries(gateway, lambda: len(receiver.requests) == 2)
    log = gateway.log_path.read_text()
    assert "webhook_attempt_failed" in log and "webhook_delivered" in log
    for secret in (created["secret"], rotated["secret"]):
        assert secret not in log
    for got in receiver.requests:
        signature = got.headers["lipwa-signature"].split("v1=")[1].split(",")[0]
        assert signature not in log


# ----- claims -----------------------------------------------------------------------------------
def test_retry_delay_has_full_jitter_under_a_cap() -> None:
    policy = DeliveryPolicy(retry_base_s=10, retry_cap_s=6 * 3600)
    rng = random.Random(1)
    for failures in range(1, 40):
        ceiling = min(6 * 3600, 10 * 2 ** (failures - 1))
        delays = [policy.retry_delay(failures, rng) for _ in range(50)]
        assert all(0 <= d <= ceiling for d in delays)
    assert max(policy.retry_delay(30, rng) for _ in range(200)) > 3600  # capped, not tiny


def test_claims_never_overlap_and_a_crashed_claim_comes_back(
    merchant: Merchant, receiver: Receiver, gateway: Gateway
) -> None:
    with merchant.client() as c:
        endpoints = [add_endpoint(c, receiver.url, ["*"]) for _ in range(4)]
    event = paid_event(merchant)
    ours = {d["id"] for e in (event["id"],) for d in deliveries(merchant, e)}
    with merchant.client() as c:
        created = c.get(
            "/v1/events", params={"resource_id": event["resource_id"], "type": "payment.created"}
        ).json()["data"][0]
    ours |= {d["id"] for d in deliveries(merchant, created["id"])}
    assert len(ours) == 8  # two events, four endpoints
    stale_id: list[str] = []

    # Short leases (5 waves of 0.8 s + 0.4 s margin: 4.4 s), yet long enough for a loaded CI
    # machine to claim every delivery and send it before its lease runs out (with 0.7 s, one
    # was once left pending there).
    policy = DeliveryPolicy(timeout_s=0.8, concurrency=1, batch_size=5, lease_margin_s=0.4)

    async def scenario() -> None:
        one, two = Container.build(gateway.settings), Container.build(gateway.settings)
        senders = [WebhookSender(c.sessions, c.vault, policy) for c in (one, two)]
        try:
            # Two workers claiming at once, like two processes: each delivery to one of them.
            seen: list[str] = []
            while True:
                batches = await asyncio.gather(*(s.claim() for s in senders))
                claimed = [c.delivery_id for batch in batches for c in batch]
                if not claimed:
                    break
                seen += claimed
            assert len(seen) == len(set(seen)) and ours <= set(seen)

            # Both "crashed" holding their claims; once the lease runs out they are due again.
            assert [c for c in await senders[0].claim() if c.delivery_id in ours] == []
            await asyncio.sleep(4.5)
            again: dict[str, Claim] = {}
            while set(again) != ours:
                again |= {
                    c.delivery_id: c for c in await senders[1].claim() if c.delivery_id in ours
                }
            await asyncio.gather(*(senders[1].deliver(c) for c in again.values()))

            # A stale claim finishing late is logged, but its fenced write changes nothing.
            stale = next(c for c in again.values() if c.event.id == event["id"])
            await senders[0].deliver(stale)
            stale_id.append(stale.delivery_id)
        finally:
            for s in senders:
                await s.close()
            await one.close()
            await two.close()

    asyncio.run(scenario())
    statuses = {d["status"] for e in (event["id"], created["id"]) for d in deliveries(merchant, e)}
    assert statuses == {"delivered"}
    stale = next(d for d in deliveries(merchant, event["id"]) if d["id"] == stale_id[0])
    assert stale["status"] == "delivered" and stale["attempt_count"] == 1
    assert [a["status_code"] for a in stale["attempts"]] == [200, 200]
    assert len(receiver.requests) == 9  # the stale send did happen: at-least-once
    with merchant.client() as c:
        for endpoint in endpoints:
            c.delete(f"/v1/webhook-endpoints/{endpoint['id']}")


# ----- polling the events list -----------------------------------------------------------------
def add_event(database_url: str, merchant: Merchant, age_s: float) -> str:
    """An event as a transaction that started ``age_s`` ago and commits only now writes it."""
    from datetime import timedelta

    from lipwa.clock import utcnow
    from lipwa.domain.ids import new_id
    from lipwa.store.db import make_engine, make_sessionmaker
    from lipwa.store.tables import Event

    event_id = new_id("evt")

    async def run() -> None:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                session.add(Event(
                    id=event_id, merchant_id=merchant.id, mode="test", type="payment.created",
                    resource_id="pay_polled", data={},
                    created_at=utcnow() - timedelta(seconds=age_s),
                ))  # fmt: skip
        finally:
            await engine.dispose()

    asyncio.run(run())
    return event_id


def poll(merchant: Merchant, cursor: str | None, limit: int = 20) -> dict[str, Any]:
    params: dict[str, Any] = {"resource_id": "pay_polled", "limit": limit}
    if cursor:
        params["cursor"] = cursor
    with merchant.client() as c:
        page: dict[str, Any] = c.get("/v1/events", params=params).json()
    return page


def test_a_poller_never_misses_an_event_committed_late(
    merchant: Merchant, database_url: str
) -> None:
    settled = [add_event(database_url, merchant, age_s=60 - i) for i in range(3)]
    young = add_event(database_url, merchant, age_s=0)
    first = poll(merchant, None, limit=2)  # settled events page on as usual
    assert [e["id"] for e in first["data"]] == settled[:2] and first["has_more"]
    second = poll(merchant, first["next_cursor"])
    assert [e["id"] for e in second["data"]] == [settled[2], young]
    assert not second["has_more"]
    # An older event whose transaction commits only now (it began before `young` was written):
    # the cursor stayed behind the young event, so the next poll still finds it.
    late = add_event(database_url, merchant, age_s=2)
    third = poll(merchant, second["next_cursor"])
    assert [e["id"] for e in third["data"]] == [late, young]  # young again: drop it by id


# ----- endpoints that misbehave ------------------------------------------------------------------
# A body trickled a byte at a time, a binary error page, an endpoint disabled while its delivery
# waits in a worker, a secret the key ring can no longer open: delivery neither stalls nor
# repeats uncounted for ever.
HITS: dict[str, int] = {}


async def _trickle() -> AsyncIterator[bytes]:
    for _ in range(40):  # 20 s of one byte every half second
        yield b"."
        await asyncio.sleep(0.5)


async def _hook(request: Request) -> Response:
    kind = request.path_params["kind"]
    HITS[kind] = HITS.get(kind, 0) + 1
    if kind == "trickle":
        return StreamingResponse(_trickle(), status_code=500)
    return Response(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00", status_code=500)


@pytest.fixture(scope="module")
def odd_host() -> Iterator[str]:
    app = Starlette(routes=[Route("/{kind}/{tag}", _hook, methods=["POST"])])
    with serve_in_thread(app) as base:
        yield base


def test_an_endpoint_trickling_its_answer_is_cut_off_at_the_timeout(
    merchant: Merchant, gateway: Gateway, odd_host: str
) -> None:
    with merchant.client() as c:
        endpoint = add_endpoint(c, f"{odd_host}/trickle/{uuid.uuid4().hex}")
    event = paid_event(merchant)
    started = time.monotonic()
    run_deliveries(
        gateway, lambda: bool(deliveries(merchant, event["id"])[0]["attempts"]),
        webhook_timeout_s=1.0,
    )  # fmt: skip
    assert time.monotonic() - started < 8  # not the 20 s the endpoint would take
    [delivery] = deliveries(merchant, event["id"])
    attempt = delivery["attempts"][0]
    assert attempt["error"] == "timed out after 1 s" and attempt["duration_ms"] < 3000
    assert delivery["status"] == "pending"  # retried later, as any failed attempt
    with merchant.client() as c:
        c.delete(f"/v1/webhook-endpoints/{endpoint['id']}")


def test_a_binary_error_page_is_logged_printable_and_counted(
    merchant: Merchant, gateway: Gateway, odd_host: str
) -> None:
    """PostgreSQL cannot store NUL: the attempt must still be recorded, else the delivery is
    claimed and sent again every lease, uncounted, for ever."""
    with merchant.client() as c:
        endpoint = add_endpoint(c, f"{odd_host}/binary/{uuid.uuid4().hex}")
    event = paid_event(merchant)
    run_deliveries(gateway, lambda: bool(deliveries(merchant, event["id"])[0]["attempts"]))
    [delivery] = deliveries(merchant, event["id"])
    assert delivery["attempt_count"] == 1 and delivery["last_status_code"] == 500
    error = delivery["attempts"][0]["error"]
    assert error.startswith("HTTP 500: ") and "PNG" in error and error.isprintable()
    with merchant.client() as c:
        c.delete(f"/v1/webhook-endpoints/{endpoint['id']}")


def test_an_endpoint_disabled_while_its_delivery_waits_in_a_worker_gets_nothing(
    merchant: Merchant, gateway: Gateway, receiver: Receiver
) -> None:
    with merchant.client() as c:
        endpoint = add_endpoint(c, receiver.url)
    event = paid_event(merchant)
    [owed] = deliveries(merchant, event["id"])

    async def scenario() -> None:
        container = Container.build(gateway.settings)
        try:
            claims = [c for c in await container.webhooks.claim() if c.delivery_id == owed["id"]]
            assert len(claims) == 1  # claimed, not yet sent...
            with merchant.client() as c:  # ...when the merchant deletes the endpoint
                assert c.delete(f"/v1/webhook-endpoints/{endpoint['id']}").status_code == 200
            await container.webhooks.deliver(claims[0])
        finally:
            await container.close()

    asyncio.run(scenario())
    assert receiver.requests == []
    assert deliveries(merchant, event["id"])[0]["status"] == "failed"


def test_a_delivery_that_cannot_be_signed_is_held_not_given_up(
    merchant: Merchant, gateway: Gateway, receiver: Receiver
) -> None:
    """The endpoint's secret is sealed under a key the worker no longer has: nothing goes out
    unsigned, and the delivery waits for the operator past the give-up window."""
    with merchant.client() as c:
        endpoint = add_endpoint(c, receiver.url)
    event = paid_event(merchant)
    past_the_window = time.monotonic() + 1.5

    def tried_past_the_window() -> bool:
        attempts = deliveries(merchant, event["id"])[0]["attempts"]
        return time.monotonic() > past_the_window and len(attempts) >= 3

    run_deliveries(
        gateway, tried_past_the_window,
        webhook_give_up_after_s=0.5, encryption_keys=SecretStr(generate_key_text("v9")),
    )  # fmt: skip
    assert receiver.requests == []
    [delivery] = deliveries(merchant, event["id"])
    assert delivery["status"] == "pending" and delivery["next_attempt_at"] is not None
    assert delivery["attempts"][0]["error"] == "cannot open the endpoint's signing secret"
    with merchant.client() as c:
        c.delete(f"/v1/webhook-endpoints/{endpoint['id']}")
