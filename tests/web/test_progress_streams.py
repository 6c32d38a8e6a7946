"""The payer's live progress stream (server-sent events) is capped: a public link opened many
times cannot hold the gateway's connections and database polls; the page then polls."""

from __future__ import annotations

import time
from contextlib import ExitStack

import httpx

from lipwa.simulator.core import Simulator
from lipwa.web.security import WebSecurity
from lipwa.web.stream_slots import MAX_PER_PAYMENT, StreamSlots
from tests.web.conftest import Merchant


def test_slots_cap_each_payment_and_the_process() -> None:
    slots = StreamSlots(max_open=3, max_per_payment=2)
    a1, a2 = slots.take("pay_a"), slots.take("pay_a")
    assert a1 is not None and a2 is not None
    assert slots.take("pay_a") is None  # the payment's cap
    b1 = slots.take("pay_b")
    assert b1 is not None
    assert slots.take("pay_c") is None  # the process's cap
    a1.release()
    a1.release()  # twice: given back once
    assert slots.open_count() == 2
    assert slots.take("pay_c") is not None
    assert slots.take("pay_a") is None  # a1's slot went to pay_c; pay_a still holds a2


def test_a_payment_opens_a_few_streams_and_a_freed_one_is_reused(
    merchant: Merchant, sim: Simulator
) -> None:
    sim.settings.prompt_seconds = 30  # stays pending while the streams are open
    payment = merchant.pay(amount="10", currency="KES", phone="0712000101").json()
    assert payment["status"] == "pending"
    token = WebSecurity(merchant.gateway.settings).payment_token(payment["id"])
    path = f"/c/{token}/events"
    with httpx.Client(base_url=merchant.gateway.url, timeout=10) as client, ExitStack() as open_:
        for _ in range(MAX_PER_PAYMENT):
            stream = open_.enter_context(client.stream("GET", path))
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
        refused = client.get(path)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "5"
        # The page's fallback still answers.
        assert client.get(f"/c/{token}/status").json()["status"] == "pending"
        open_.close()  # the payer closes the tabs
        deadline = time.monotonic() + 5
        while True:
            with client.stream("GET", path) as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "closed streams never gave their slots back"
            time.sleep(0.1)
