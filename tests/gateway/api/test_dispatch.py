"""Dispatch among a model's deployments: spill when own slots are full, drain back when they free, fall
back before the first byte, never retry a caller's error, and keep a caller to its allowed pools.

The clients here are fault injectors (they answer, hold, or fail on cue); the real engines are proven in
tests/e2e/test_pools.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from backends.base import (
    ChoiceDelta,
    EngineRequest,
    GenerationChunk,
    GenerationRequest,
    TextPrompt,
    Usage,
    close_stream,
)
from backends.errors import BackendUnavailable, InvalidRequest, replica_lost
from gateway.api.dispatch import Answer, Failed, dispatch
from gateway.billing.overload import ModelGates
from gateway.catalog.policy import Routing
from gateway.catalog.routing import Route, RoutedModel
from gateway.catalog.schema import Pricing
from gateway.errors import PoolNotAllowed, openai_error
from gateway.placement.live import LivePlacement
from gateway.placement.state import PlacementRequest

REQUEST = PlacementRequest(input_tokens=10, output_tokens=10)


class Cue:
    """A client that answers at once, holds its answer until released, or fails before its first byte."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.asked = 0
        self.fail: Exception | None = None
        self.hold = asyncio.Event()
        self.hold.set()

    async def generate(self, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        self.asked += 1
        if self.fail is not None:
            raise self.fail
        yield GenerationChunk(choices=[ChoiceDelta(index=0, text=self.name)])
        await self.hold.wait()
        yield GenerationChunk(choices=[ChoiceDelta(index=0, finish_reason="stop")], usage=Usage(1, 1))


def model(own: Cue, rented: Cue, policy: str = "own_first") -> RoutedModel:
    return RoutedModel(
        name="m",
        family="llama",
        owned_by="test",
        context_length=2048,
        created=0,
        aliases=(),
        routes=(
            Route(name="m", client=own, chip="cpu", pool="own", capacity=1, queue_limit=4),
            Route(
                name="m@api",
                client=rented,
                chip="cpu",
                pool="api",
                capacity=8,
                queue_limit=8,
                owned=False,
                input_cost=0.5,
                output_cost=1.0,
            ),
        ),
        pricing=Pricing(),
        routing=Routing(policy=policy),  # type: ignore[arg-type]
    )


async def send(
    m: RoutedModel, gates: ModelGates, placement: LivePlacement, request: PlacementRequest
) -> Answer:
    generation = GenerationRequest(request_id="r", prompt=TextPrompt("hi"))
    return await dispatch(m, generation, "acme", request, gates, placement)


def text(answer: Answer) -> str:
    assert answer.first is not None
    return answer.first.choices[0].text


async def test_own_first_spills_when_the_own_slot_is_taken_and_drains_back_when_it_frees() -> None:
    own, rented = Cue("own"), Cue("rented")
    own.hold.clear()
    m, gates, placement = model(own, rented), ModelGates(), LivePlacement()
    first = await send(m, gates, placement, REQUEST)
    assert (text(first), first.route.pool, first.attempts) == ("own", "own", 1)
    spilled = await send(m, gates, placement, REQUEST)  # own's one slot is held by the first
    assert (text(spilled), spilled.route.name) == ("rented", "m@api")
    await close_stream(spilled.chunks)
    own.hold.set()
    await close_stream(first.chunks)  # the own slot frees
    back = await send(m, gates, placement, REQUEST)
    assert text(back) == "own"
    await close_stream(back.chunks)


async def test_a_deployment_failing_before_its_first_byte_is_skipped_for_the_next_and_then_for_a_while() -> (
    None
):
    own, rented = Cue("own"), Cue("rented")
    own.fail = BackendUnavailable("replica lost")
    m, gates, placement = model(own, rented), ModelGates(), LivePlacement()
    answer = await send(m, gates, placement, REQUEST)
    assert (text(answer), answer.attempts, own.asked) == ("rented", 2, 1)
    await close_stream(answer.chunks)
    own.fail = None
    again = await send(m, gates, placement, REQUEST)  # own cools down: not asked again at once
    assert (text(again), again.attempts, own.asked) == ("rented", 1, 1)
    await close_stream(again.chunks)


class LosesOneReplica(Cue):
    """Its first call dies with its replica before the first byte; the deployment's others answer."""

    async def generate(self, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        self.asked += 1
        if self.asked == 1 or self.fail is not None:
            raise self.fail or replica_lost()
        yield GenerationChunk(choices=[ChoiceDelta(index=0, text=self.name)], usage=Usage(1, 1))


async def test_a_replica_lost_before_the_first_byte_is_retried_once_where_nothing_else_serves() -> None:
    own = LosesOneReplica("own")
    two = model(own, Cue("rented"))
    m, gates, placement = dataclasses.replace(two, routes=two.routes[:1]), ModelGates(), LivePlacement()
    answer = await send(m, gates, placement, REQUEST)  # its other replicas take the call
    assert (text(answer), answer.route.name, answer.attempts, own.asked) == ("own", "m", 2, 2)
    await close_stream(answer.chunks)
    own.fail = replica_lost()  # lost every time: one retry, then the error
    with pytest.raises(Failed) as failed:
        await send(m, gates, placement, REQUEST)
    assert failed.value.attempts == 2 and openai_error(failed.value.error).code == "backend_unavailable"


async def test_a_replica_lost_falls_back_to_the_next_deployment_when_there_is_one() -> None:
    own, rented = LosesOneReplica("own"), Cue("rented")
    m, gates, placement = model(own, rented), ModelGates(), LivePlacement()
    answer = await send(m, gates, placement, REQUEST)
    assert (text(answer), answer.attempts, own.asked) == ("rented", 2, 1)
    await close_stream(answer.chunks)


async def test_a_callers_error_is_not_retried_on_another_deployment() -> None:
    own, rented = Cue("own"), Cue("rented")
    own.fail = InvalidRequest("bad prompt")
    m, gates, placement = model(own, rented), ModelGates(), LivePlacement()
    with pytest.raises(Failed) as failed:
        await send(m, gates, placement, REQUEST)
    assert isinstance(failed.value.error, InvalidRequest) and failed.value.attempts == 1
    assert rented.asked == 0


async def test_when_every_deployment_fails_the_last_error_is_the_answer() -> None:
    own, rented = Cue("own"), Cue("rented")
    own.fail = BackendUnavailable("own down")
    rented.fail = BackendUnavailable("api down")
    with pytest.raises(Failed) as failed:
        await send(model(own, rented), ModelGates(), LivePlacement(), REQUEST)
    assert failed.value.error.message == "api down" and failed.value.attempts == 2
    assert failed.value.route.name == "m@api"


async def test_a_caller_kept_to_the_own_pool_waits_for_it_and_is_never_sent_to_rented_capacity() -> None:
    own, rented = Cue("own"), Cue("rented")
    own.hold.clear()
    m, gates, placement = model(own, rented), ModelGates(), LivePlacement()
    own_only = PlacementRequest(10, 10, allowed_pools=frozenset({"own"}))
    first = await send(m, gates, placement, own_only)
    second = asyncio.ensure_future(send(m, gates, placement, own_only))  # queues for the one own slot
    await asyncio.sleep(0.01)
    assert not second.done() and rented.asked == 0
    own.hold.set()
    await close_stream(first.chunks)
    answer = await second
    assert text(answer) == "own" and rented.asked == 0
    await close_stream(answer.chunks)
    with pytest.raises(PoolNotAllowed, match="runs in pools api, own"):
        await send(m, gates, placement, PlacementRequest(10, 10, allowed_pools=frozenset({"eu"})))


async def test_cheapest_sends_to_the_lowest_marginal_cost_with_headroom() -> None:
    own, rented = Cue("own"), Cue("rented")
    answer = await send(model(own, rented, policy="cheapest"), ModelGates(), LivePlacement(), REQUEST)
    assert text(answer) == "own"  # own costs nothing at the margin
    await close_stream(answer.chunks)


async def test_a_request_with_a_response_format_goes_only_to_deployments_that_enforce_it() -> None:
    """The own deployment is free and first in order, but cannot enforce a schema: the rented one can."""
    from backends.tools import StructuredOutput, ToolFunction, ToolPlan

    own, rented = Cue("own"), Cue("rented")
    base = model(own, rented)
    m = dataclasses.replace(
        base, routes=(base.routes[0], dataclasses.replace(base.routes[1], constrained=True))
    )
    gates, placement = ModelGates(), LivePlacement()
    structured = GenerationRequest(
        request_id="r", prompt=TextPrompt("hi"), structured=StructuredOutput(json_object=True)
    )
    answer = await dispatch(m, structured, "acme", REQUEST, gates, placement)
    assert text(answer) == "rented" and own.asked == 0
    await close_stream(answer.chunks)
    auto = GenerationRequest(
        request_id="r2", prompt=TextPrompt("hi"), tools=ToolPlan((ToolFunction("f"),), choice="auto")
    )
    with pytest.raises(Failed):  # no deployment reads auto calls: the first (own) is asked and refuses
        own.fail = InvalidRequest("auto")
        await dispatch(m, auto, "acme", REQUEST, gates, placement)
    own.fail = None
    plain = await send(m, gates, placement, REQUEST)
    assert text(plain) == "own"  # a plain request goes where placement says
    await close_stream(plain.chunks)
