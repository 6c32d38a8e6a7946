"""MoMo callbacks at a real receiver on loopback, with every callback fault."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from lipwa.simulator.core import SimSettings, Simulator

if TYPE_CHECKING:
    from tests.simulator.conftest import MoMoKit, Receiver

Served = tuple["Receiver", str]
KitFor = Callable[..., AbstractAsyncContextManager["MoMoKit"]]


async def test_request_to_pay_callback_is_a_put_with_the_status_body(
    momo: MoMoKit, momo_receiver: Served
) -> None:
    receiver, base = momo_receiver
    url = f"{base}/momo/callback?payment=42"  # our own id rides in the URL: MoMo sends none
    ref, response = await momo.create("requesttopay", callback=url)
    assert response.status_code == 202
    status = await momo.settled("requesttopay", ref)
    [call] = await receiver.wait_for(1)
    assert call["method"] == "PUT"
    assert (call["path"], call["query"]) == ("/momo/callback", "payment=42")
    assert json.loads(call["body"]) == status
    assert status["status"] == "SUCCESSFUL"


async def test_failed_callback_carries_the_reason(momo: MoMoKit, momo_receiver: Served) -> None:
    receiver, base = momo_receiver
    await momo.create("requesttopay", "46733123451", callback=f"{base}/cb")
    await momo.sim.drain()
    [call] = await receiver.wait_for(1)
    body = json.loads(call["body"])
    assert (body["status"], body["reason"]) == ("FAILED", "APPROVAL_REJECTED")
    assert "financialTransactionId" not in body


async def test_callback_method_setting(momo: MoMoKit, momo_receiver: Served) -> None:
    receiver, base = momo_receiver
    momo.sim.settings.momo_callback_method = "POST"
    await momo.create("requesttopay", callback=f"{base}/rtp")
    await momo.create("transfer", callback=f"{base}/transfer")
    await momo.sim.drain()
    calls = await receiver.wait_for(2)
    assert sorted((c["path"], c["method"]) for c in calls) == [("/rtp", "POST"),
                                                               ("/transfer", "POST")]


async def test_transfer_put_and_deposit_post(momo: MoMoKit, momo_receiver: Served) -> None:
    receiver, base = momo_receiver
    await momo.create("transfer", callback=f"{base}/transfer")
    await momo.create("deposit", callback=f"{base}/deposit")
    await momo.sim.drain()
    calls = {c["path"]: c for c in await receiver.wait_for(2)}
    assert calls["/transfer"]["method"] == "PUT"
    assert calls["/deposit"]["method"] == "POST"  # the Deposit-V1 callback is a POST
    assert json.loads(calls["/deposit"]["body"])["payee"]["partyId"] == "256772123456"


async def test_no_callback_cases(momo: MoMoKit, momo_receiver: Served) -> None:
    receiver, base = momo_receiver
    await momo.create("requesttopay")  # no X-Callback-Url
    ongoing, _ = await momo.create("requesttopay", "46733123453", callback=f"{base}/ongoing")
    lost = str(uuid.uuid4())
    momo.sim.overrides[("momo", "reference", lost)] = "no_callback"
    await momo.create("requesttopay", ref=lost, callback=f"{base}/lost")
    await momo.create("requesttopay", "46733123454", callback=f"{base}/delayed")
    await momo.sim.drain()
    calls = await receiver.wait_for(1)
    assert [c["path"] for c in calls] == ["/delayed"]  # only the one that became final
    assert (await momo.status("requesttopay", lost)).json()["status"] == "SUCCESSFUL"
    assert (await momo.status("requesttopay", ongoing)).json()["status"] == "PENDING"


async def test_drop(momo: MoMoKit, momo_receiver: Served) -> None:
    receiver, base = momo_receiver
    momo.sim.faults.callback_drop_pct = 100
    ref, _ = await momo.create("requesttopay", callback=f"{base}/cb")
    await momo.sim.drain()
    await asyncio.sleep(0.1)
    assert receiver.calls == []
    assert [c.dropped for c in momo.sim.callbacks] == [True]
    assert (await momo.status("requesttopay", ref)).json()["status"] == "SUCCESSFUL"


async def test_duplicate(momo: MoMoKit, momo_receiver: Served) -> None:
    receiver, base = momo_receiver
    momo.sim.faults.callback_duplicate_pct = 100
    await momo.create("requesttopay", callback=f"{base}/cb")
    await momo.sim.drain()
    first, second = await receiver.wait_for(2)
    assert first["body"] == second["body"]


async def test_delay(momo: MoMoKit, momo_receiver: Served) -> None:
    receiver, base = momo_receiver
    momo.sim.faults.callback_delay_min_s = momo.sim.faults.callback_delay_max_s = 0.3
    ref, _ = await momo.create("requesttopay", callback=f"{base}/cb")
    await momo.sim.drain()
    [call] = await receiver.wait_for(1)
    completed = momo.sim.transactions["momo"][ref]["completed_at"]
    assert call["at"] - completed >= 0.29


def _refs_for_reorder(sim: Simulator) -> tuple[str, str]:
    """Two references whose first callback is held back and second is not (at 50 %)."""
    refs = (str(uuid.UUID(int=n, version=4)) for n in range(1, 10_000))
    first = next(r for r in refs if sim.chance("reorder1", r) < 0.5)
    second = next(r for r in refs if sim.chance("reorder2", r) >= 0.5)
    return first, second


async def test_reorder(momo: MoMoKit, momo_receiver: Served) -> None:
    receiver, base = momo_receiver
    momo.sim.faults.callback_reorder_pct = 50
    first, second = _refs_for_reorder(momo.sim)
    await momo.create("requesttopay", ref=first, callback=f"{base}/first")
    await asyncio.sleep(0.15)  # the first is final and its callback held back
    await momo.create("requesttopay", ref=second, callback=f"{base}/second")
    calls = await receiver.wait_for(2)  # not drain(): the holding task idles for 2 s
    assert [c["path"] for c in calls] == ["/second", "/first"]


async def _run_scenario(kit_for: KitFor, seed: int, base: str) -> tuple[list[Any], list[Any]]:
    """The same calls against a fresh simulator; returns API answers and callback fates."""
    sim = Simulator(seed=seed, settings=SimSettings(prompt_seconds=0.02,
                                                    momo_callback_host="127.0.0.1"))
    async with kit_for(sim) as kit:
        await kit.token("collection")
        sim.faults.update({"error_pct": 40, "callback_drop_pct": 30,
                           "callback_duplicate_pct": 30})
        answers = []
        for n in range(1, 21):
            ref = str(uuid.UUID(int=n, version=4))
            _, response = await kit.create("requesttopay", ref=ref, callback=f"{base}/{n}")
            answers.append(response.status_code)
        await sim.drain()
        fates = sorted((c.key, c.dropped, c.duplicate) for c in sim.callbacks)
    await sim.close()
    return answers, fates


async def test_reproducible_by_seed(momo_receiver: Served, momo_kit_for: KitFor) -> None:
    _, base = momo_receiver
    one = await _run_scenario(momo_kit_for, 3, base)
    assert one == await _run_scenario(momo_kit_for, 3, base)
    assert one != await _run_scenario(momo_kit_for, 4, base)
    answers, fates = one
    assert {202, 500, 503} & set(answers) >= {202}
    assert any(dropped for _, dropped, _ in fates) and any(dup for _, _, dup in fates)
