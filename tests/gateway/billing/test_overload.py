"""The per-model gate: a bounded queue, refusals at once past it, and fair shares between tenants."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from backends.base import ChoiceDelta, GenerationChunk
from gateway.billing.overload import ModelGate, ModelGates, gated
from gateway.errors import ModelSaturated, TenantOverShare, openai_error


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def waiting(gate: ModelGate, tenant: str) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(gate.enter(tenant))


async def test_requests_under_capacity_run_at_once_and_the_rest_wait_in_order() -> None:
    gate = ModelGate("m", capacity=2, max_queued=4)
    await gate.enter("a")
    await gate.enter("a")
    third, fourth = waiting(gate, "a"), waiting(gate, "a")
    await settle()
    assert (gate.running, gate.queued) == (2, 2) and not third.done()
    gate.leave("a", held_s=0.5)
    await settle()
    assert third.done() and not fourth.done()


async def test_a_full_queue_refuses_a_lone_tenant_at_once_with_503_and_retry_after() -> None:
    gate = ModelGate("m", capacity=1, max_queued=2)
    await gate.enter("a")
    queued = [waiting(gate, "a") for _ in range(2)]
    await settle()
    with pytest.raises(ModelSaturated) as info:
        await asyncio.wait_for(gate.enter("a"), 0.1)  # refused, not left waiting
    answer = openai_error(info.value)
    assert answer.status == 503 and answer.headers is not None and int(answer.headers["retry-after"]) >= 1
    assert gate.queued == 2
    for task in queued:
        task.cancel()


async def test_a_quiet_tenant_displaces_the_newest_request_of_a_flooding_one() -> None:
    gate = ModelGate("m", capacity=1, max_queued=3)
    await gate.enter("flood")
    flood = [waiting(gate, "flood") for _ in range(3)]
    await settle()
    quiet = waiting(gate, "quiet")
    await settle()
    assert flood[-1].done() and isinstance(flood[-1].exception(), TenantOverShare)
    assert openai_error(flood[-1].exception()).status == 429  # type: ignore[arg-type]
    assert gate.queued == 3 and not quiet.done()
    gate.leave("flood", held_s=1.0)  # the freed slot goes to the tenant with none running
    await settle()
    assert quiet.done() and quiet.exception() is None and not flood[0].done()
    for task in flood[:2]:
        task.cancel()


async def test_a_flooding_tenant_is_refused_with_429_when_the_queue_is_fairly_shared() -> None:
    gate = ModelGate("m", capacity=1, max_queued=2)
    await gate.enter("quiet")
    held = [waiting(gate, "flood"), waiting(gate, "quiet")]
    await settle()
    with pytest.raises(TenantOverShare):
        await gate.enter("flood")
    for task in held:
        task.cancel()


async def test_a_saturated_model_is_shared_equally_whatever_each_tenant_sends() -> None:
    gate = ModelGate("m", capacity=4, max_queued=100)
    served = {"flood": 0, "quiet": 0}

    async def client(tenant: str) -> None:
        while True:
            async with gate.slot(tenant):
                served[tenant] += 1
                await asyncio.sleep(0.001)

    tasks = [asyncio.create_task(client("flood")) for _ in range(40)]
    tasks += [asyncio.create_task(client("quiet")) for _ in range(2)]
    await asyncio.sleep(0.3)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Two quiet clients can hold at most two slots at a time: they get them whenever they ask.
    assert served["quiet"] >= 0.3 * (served["flood"] + served["quiet"]), served


async def test_a_waiter_that_leaves_frees_its_place_and_a_granted_one_its_slot() -> None:
    gate = ModelGate("m", capacity=1, max_queued=2)
    await gate.enter("a")
    gone = waiting(gate, "a")
    await settle()
    gone.cancel()
    await settle()
    assert gate.queued == 0
    late = waiting(gate, "b")
    await settle()
    gate.leave("a", held_s=0.1)  # granted to ``late`` ...
    late.cancel()  # ... which is cancelled before it resumes
    await settle()
    assert (gate.running, gate.queued) == (0, 0)


async def test_a_gated_stream_holds_its_slot_until_it_ends_or_is_closed() -> None:
    gate = ModelGate("m", capacity=1, max_queued=0)

    async def chunks() -> AsyncIterator[GenerationChunk]:
        for text in ("a", "b"):
            yield GenerationChunk(choices=[ChoiceDelta(0, text)])

    stream = gated(gate.slot("t"), chunks())
    assert gate.running == 0  # nothing is taken before the first chunk is asked for
    await anext(stream)
    assert gate.running == 1
    with pytest.raises(ModelSaturated):
        await anext(gated(gate.slot("t"), chunks()))
    await stream.aclose()  # a client that leaves early
    assert gate.running == 0
    whole = gated(gate.slot("t"), chunks())
    assert [c.choices[0].text async for c in whole] == ["a", "b"]
    assert gate.running == 0


async def test_retry_after_follows_how_long_slots_were_held() -> None:
    gate = ModelGate("m", capacity=1, max_queued=10)
    await gate.enter("a")
    for _ in range(30):
        gate.leave("a", held_s=4.0)
        await gate.enter("a")
    queued = [waiting(gate, "a") for _ in range(3)]
    await settle()
    assert gate.retry_after_s() >= 12  # four queued rounds of about 4 s each
    for task in queued:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*queued)


def test_gates_keep_their_counts_across_catalog_changes_and_take_new_limits() -> None:
    gates = ModelGates()
    first = gates.gate("m", 2, 2)
    first._running["a"] = 1
    again = gates.gate("m", 8, 16)
    assert again is first and (again.capacity, again.max_queued, again.running) == (8, 16, 1)
    assert gates.snapshot() == {"m": {"running": 1, "queued": 0, "capacity": 8, "max_queued": 16}}


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_tenants_later_priority_request_passes_its_own_earlier_flex_requests() -> None:
    clock = _Clock()
    gate = ModelGate("m", capacity=1, max_queued=4, clock=clock)
    await gate.enter("a")
    flex = [asyncio.create_task(gate.enter("a", ttft_slo_s=120.0)) for _ in range(2)]
    await settle()
    clock.now += 5
    priority = asyncio.create_task(gate.enter("a", ttft_slo_s=2.0))
    await settle()
    gate.leave("a", held_s=1.0)
    await settle()
    assert priority.done() and not any(task.done() for task in flex)
    gate.leave("a", held_s=1.0)
    await settle()
    assert flex[0].done() and not flex[1].done()  # the flex ones in their arrival order
    flex[1].cancel()


async def test_deadlines_never_take_a_slot_from_another_tenants_fair_share() -> None:
    clock = _Clock()
    gate = ModelGate("m", capacity=2, max_queued=4, clock=clock)
    await gate.enter("a")
    await gate.enter("b")
    b_flex = asyncio.create_task(gate.enter("b", ttft_slo_s=120.0))
    await settle()
    a_priority = asyncio.create_task(gate.enter("a", ttft_slo_s=1.0))
    await settle()
    # b now runs 1 and a 0 when a's slot frees: a is owed the slot whatever b's deadline
    gate.leave("a", held_s=1.0)
    await settle()
    assert a_priority.done() and not b_flex.done()
    # when b's slot frees, b (running none) goes next even though a's next request is more urgent
    a_more = asyncio.create_task(gate.enter("a", ttft_slo_s=1.0))
    await settle()
    gate.leave("b", held_s=1.0)
    await settle()
    assert b_flex.done() and not a_more.done()
    a_more.cancel()


async def test_a_flooding_tenant_loses_its_least_urgent_waiter_to_a_quiet_one() -> None:
    gate = ModelGate("m", capacity=1, max_queued=3)
    await gate.enter("flood")
    urgent = asyncio.create_task(gate.enter("flood", ttft_slo_s=1.0))
    lax = asyncio.create_task(gate.enter("flood", ttft_slo_s=100.0))
    newest = asyncio.create_task(gate.enter("flood", ttft_slo_s=1.0))
    await settle()
    quiet = asyncio.create_task(gate.enter("quiet"))
    await settle()
    assert lax.done() and isinstance(lax.exception(), TenantOverShare)
    assert not urgent.done() and not newest.done() and not quiet.done()
    for task in (urgent, newest, quiet):
        task.cancel()
