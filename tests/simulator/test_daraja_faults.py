"""Daraja simulator under injected faults, as seen by a real callback receiver."""

from __future__ import annotations

import asyncio
import time

from lipwa.simulator.core import SimSettings, Simulator
from tests.simulator.conftest import assert_daraja_error as assert_error

FROZEN = 1_717_000_000.0  # a fixed clock makes ids, hence fault decisions, reproducible


async def push_many(kit, receiver, count: int) -> list[str]:
    ids = []
    for n in range(count):
        response = await kit.push(phone=f"2547083{n + 100:05d}", callback=f"{receiver.url}/stk")
        assert response.status_code == 200, response.text
        ids.append(response.json()["CheckoutRequestID"])
    return ids


async def test_drop(daraja, daraja_receiver):
    daraja.sim.faults.update({"callback_drop_pct": 100})
    [checkout_id] = await push_many(daraja, daraja_receiver, 1)
    await daraja.settle()
    await asyncio.sleep(0.1)
    assert daraja_receiver.bodies("/stk") == []
    assert daraja.sim.callbacks[0].dropped and daraja.sim.callbacks[0].key == checkout_id
    # The transaction still happened: the merchant must learn it by querying.
    assert daraja.sim.transactions["mpesa"][checkout_id]["status"] == "completed"


async def test_duplicate(daraja, daraja_receiver):
    daraja.sim.faults.update({"callback_duplicate_pct": 100})
    await push_many(daraja, daraja_receiver, 1)
    first, second = await daraja_receiver.wait_for("/stk", 2)
    assert first == second
    assert [c.duplicate for c in daraja.sim.callbacks] == [False, True]


async def test_delay(daraja, daraja_receiver):
    daraja.sim.faults.update({"callback_delay_min_s": 0.4, "callback_delay_max_s": 0.4})
    started = time.time()
    await push_many(daraja, daraja_receiver, 1)
    await asyncio.sleep(daraja.sim.settings.prompt_seconds + 0.2)
    assert daraja_receiver.bodies("/stk") == []  # resolved, but not delivered yet
    await daraja_receiver.wait_for("/stk")
    [arrived] = [c["at"] for c in daraja_receiver.calls if c["path"] == "/stk"]
    assert arrived - started >= 0.4 + daraja.sim.settings.prompt_seconds


async def test_error_pct_answers_spike_arrest_on_every_api(daraja):
    token = await daraja.token()
    daraja.sim.faults.update({"error_pct": 100})
    for path in ("/mpesa/stkpush/v1/processrequest", "/mpesa/c2b/v2/simulate",
                 "/mpesa/b2c/v3/paymentrequest"):
        response = await daraja.post(path, daraja.stk_body(), token)
        assert_error(response, 500, "500.003.02",
                     "System is busy. Please try again in few minutes.")
    oauth = await daraja.client.get("/oauth/v1/generate?grant_type=client_credentials",
                                    auth=("a", "b"))
    assert_error(oauth, 500, "500.003.02")
    assert "mpesa" not in daraja.sim.transactions or not daraja.sim.transactions["mpesa"]


async def test_error_pct_is_reproducible_with_the_same_seed(daraja_kit_for):
    async def outcomes(seed: int) -> list[int]:
        sim = Simulator(seed=seed, settings=SimSettings(prompt_seconds=60))
        try:
            async with daraja_kit_for(sim) as kit:
                token = await kit.token()
                sim.faults.update({"error_pct": 50})
                return [
                    (await kit.post("/mpesa/stkpushquery/v1/query", {}, token)).status_code
                    for _ in range(30)
                ]
        finally:
            await sim.close()

    first, again, other = await outcomes(3), await outcomes(3), await outcomes(4)
    assert first == again
    assert 500 in first and 400 in first  # some throttled, some reached validation
    assert first != other


async def test_latency(daraja):
    await daraja.token()
    daraja.sim.faults.update({"latency_ms": 150})
    started = time.monotonic()
    await daraja.push()
    assert time.monotonic() - started >= 0.15


async def run_scenario(kit_for, receiver, seed: int) -> list[tuple[str, bool, bool]]:
    sim = Simulator(seed=seed, settings=SimSettings(prompt_seconds=0.05))
    try:
        async with kit_for(sim) as kit:
            kit.daraja.clock = lambda: FROZEN
            sim.faults.update({"callback_drop_pct": 40, "callback_duplicate_pct": 40})
            await push_many(kit, receiver, 16)
            await kit.settle()
            return [(c.key, c.dropped, c.duplicate) for c in sim.callbacks]
    finally:
        await sim.close()


async def test_same_seed_same_fault_decisions(daraja_kit_for, daraja_receiver):
    first = await run_scenario(daraja_kit_for, daraja_receiver, seed=5)
    again = await run_scenario(daraja_kit_for, daraja_receiver, seed=5)
    other = await run_scenario(daraja_kit_for, daraja_receiver, seed=6)
    assert first == again
    assert any(dropped for _, dropped, _ in first) and any(dup for _, _, dup in first)
    assert first != other
    # Same transactions (same ids), different decisions.
    assert sorted({k for k, _, _ in first}) == sorted({k for k, _, _ in other})


async def test_reorder_delivers_a_held_callback_after_the_next(daraja_kit_for, daraja_receiver):
    """Callback A is held back, B is not: the receiver sees B before A."""
    phones = ["254708300100", "254708300200"]

    async def run(seed: int, reorder_pct: float) -> tuple[list[str], list[str]]:
        sim = Simulator(seed=seed, settings=SimSettings(prompt_seconds=0.05))
        try:
            async with daraja_kit_for(sim) as kit:
                kit.daraja.clock = lambda: FROZEN
                sim.faults.update({"callback_reorder_pct": reorder_pct})
                ids = []
                for phone in phones:  # one after the other: A resolves before B
                    r = await kit.push(phone=phone, callback=f"{daraja_receiver.url}/stk")
                    ids.append(r.json()["CheckoutRequestID"])
                    # Not drain(): that would wait out A's 2 s hold-back before B exists.
                    await asyncio.sleep(sim.settings.prompt_seconds + 0.05)
                await daraja_receiver.wait_for("/stk", 2)
                return ids, [b["Body"]["stkCallback"]["CheckoutRequestID"]
                             for b in daraja_receiver.bodies("/stk")]
        finally:
            await sim.close()

    # With a frozen clock the ids do not depend on the seed; find a seed that holds back
    # only the first callback (callback ids are 1 and 2), the way core decides it.
    (a, b), _ = await run(0, reorder_pct=0)
    daraja_receiver.calls.clear()
    seed = next(
        s for s in range(200)
        if Simulator(seed=s).chance("reorder1", a) < 0.5 <= Simulator(seed=s).chance("reorder2", b)
    )
    ids, arrived = await run(seed, reorder_pct=50)
    assert ids == [a, b]
    assert arrived == [b, a]
