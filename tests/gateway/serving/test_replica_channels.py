"""The replica channel over real loopback sockets: the gateway's hub on one end, ``ReplicaLink`` on the other.

The replica's engine is stood in for by a source the test drives (transport behaviour and fault injection);
the real engine behind the channel is proven by the end-to-end suite, which serves through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from collections.abc import AsyncIterator

import pytest

from backends.base import ChoiceDelta, GenerationChunk, GenerationRequest, TextPrompt, Usage
from backends.channel_wire import CHUNK, END, frame, pack
from backends.replica_link import ReplicaLink, batch
from gateway.errors import BackendUnavailable, InvalidRequest
from gateway.serving.replica_channels import ChannelHub, ChannelRoute, ReplicaChannel

APP = "model-test"
UNPICKLED: list[int] = []


class Engine:
    """Per request, a queue of chunks the test feeds; records which requests were cancelled."""

    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue[GenerationChunk | BaseException | None]] = {}
        self.cancelled: list[str] = []
        self.started = asyncio.Event()

    def feed(self, request_id: str, item: GenerationChunk | BaseException | None) -> None:
        self.queues.setdefault(request_id, asyncio.Queue()).put_nowait(item)

    async def serve(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        queue = self.queues.setdefault(request.request_id, asyncio.Queue())
        self.started.set()
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        except asyncio.CancelledError:
            self.cancelled.append(request.request_id)
            raise


def chunk(
    text: str, tokens: int, finish: bool = False, engine_seconds: float | None = None
) -> GenerationChunk:
    return GenerationChunk(
        choices=[ChoiceDelta(0, text, "stop" if finish else None)],
        usage=Usage(3, tokens),
        engine_seconds=engine_seconds,
    )


def request(request_id: str) -> GenerationRequest:
    return GenerationRequest(request_id, TextPrompt("hi"))


async def until(condition: object, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.fixture
async def hub() -> AsyncIterator[ChannelHub]:
    hub = ChannelHub("127.0.0.1")
    await hub.serve()
    yield hub
    hub.close()
    await asyncio.sleep(0.05)  # the closed channels' readers end


@contextlib.asynccontextmanager
async def replica(hub: ChannelHub, engine: Engine, release: str = "r1") -> AsyncIterator[ReplicaLink]:
    link = ReplicaLink(hub.ticket(APP, release), "test-replica", engine.serve)
    link.start()
    assert await link.wait_connected(5)
    await until(lambda: len(hub.open_channels(APP, release)) >= 1)
    try:
        yield link
    finally:
        await link.close(drain_timeout_s=1)


async def collect(stream: AsyncIterator[GenerationChunk]) -> list[GenerationChunk]:
    return [c async for c in stream]


async def open_stream(route: ChannelRoute, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
    channel = await route.acquire()
    assert isinstance(channel, ReplicaChannel)
    return channel.stream(req)


async def test_chunks_of_concurrent_requests_reach_their_own_callers_in_order(hub: ChannelHub) -> None:
    engine = Engine()
    async with replica(hub, engine):
        route = hub.route(APP, "r1", replicas=1, max_ongoing=8)
        streams = {rid: await open_stream(route, request(rid)) for rid in ("a", "b")}
        for rid in ("a", "b"):
            engine.feed(rid, chunk(f"{rid}1 ", 1, engine_seconds=0.25))
            engine.feed(rid, chunk(f"{rid}2", 2, finish=True))
            engine.feed(rid, None)
        for rid, stream in streams.items():
            got = [c async for c in stream]
            assert "".join(d.text for c in got for d in c.choices) == f"{rid}1 {rid}2"
            assert got[-1].choices[-1].finish_reason == "stop"
            assert got[-1].usage == Usage(3, 2)
            assert got[0].engine_seconds == 0.25  # the backend's own time survives merging
        assert hub.open_channels(APP, "r1")[0].in_flight == 0


async def test_a_caller_that_leaves_early_aborts_the_request_in_the_replica(hub: ChannelHub) -> None:
    engine = Engine()
    async with replica(hub, engine) as link:
        route = hub.route(APP, "r1", replicas=1, max_ongoing=8)
        stream = await open_stream(route, request("gone"))
        engine.feed("gone", chunk("x", 1))
        assert (await anext(stream)).choices[0].text == "x"
        await stream.aclose()
        await until(lambda: engine.cancelled == ["gone"])
        assert link.open_requests == 0


async def test_a_backend_error_reaches_the_gateway_as_the_same_error_type(hub: ChannelHub) -> None:
    engine = Engine()
    async with replica(hub, engine):
        route = hub.route(APP, "r1", replicas=1, max_ongoing=8)
        stream = await open_stream(route, request("bad"))
        engine.feed("bad", InvalidRequest("max_tokens is too large", param="max_tokens"))
        with pytest.raises(InvalidRequest, match="max_tokens is too large") as info:
            await anext(stream)
        assert info.value.param == "max_tokens"


async def test_an_engine_error_arrives_as_an_internal_error_with_its_text(hub: ChannelHub) -> None:
    class EngineDead(Exception):  # a type the gateway's process might not be able to import
        pass

    engine = Engine()
    async with replica(hub, engine):
        route = hub.route(APP, "r1", replicas=1, max_ongoing=8)
        stream = await open_stream(route, request("dead"))
        engine.feed("dead", EngineDead("engine core died"))
        with pytest.raises(RuntimeError, match="EngineDead: engine core died"):
            await anext(stream)
        assert len(hub.open_channels(APP, "r1")) == 1  # the replica's other requests are not disturbed


async def test_a_lost_replica_fails_its_open_streams_and_routing_falls_back(hub: ChannelHub) -> None:
    engine = Engine()
    async with replica(hub, engine):
        route = hub.route(APP, "r1", replicas=1, max_ongoing=8)
        stream = await open_stream(route, request("cut"))
        engine.feed("cut", chunk("x", 1))
        assert (await anext(stream)).choices[0].text == "x"
        channel = hub.open_channels(APP, "r1")[0]
        channel.abort()  # the connection drops as when the replica's process dies
        with pytest.raises(BackendUnavailable):
            await anext(stream)
        await until(lambda: not hub.open_channels(APP, "r1"))
        assert await route.acquire() is None  # Serve's handle takes the model's requests meanwhile
        await until(lambda: engine.cancelled == ["cut"])  # the replica aborted what the lost client asked


async def test_a_draining_replica_finishes_its_streams_but_gets_no_new_ones(hub: ChannelHub) -> None:
    engine = Engine()
    link = ReplicaLink(hub.ticket(APP, "r1"), "test-replica", engine.serve)
    link.start()
    await until(lambda: len(hub.open_channels(APP, "r1")) == 1)
    route = hub.route(APP, "r1", replicas=1, max_ongoing=8)
    stream = await open_stream(route, request("last"))
    consumer = asyncio.create_task(collect(stream))
    await asyncio.wait_for(engine.started.wait(), 5)
    closing = asyncio.create_task(link.close(drain_timeout_s=5))
    await until(lambda: not hub.open_channels(APP, "r1"))
    assert await route.acquire() is None
    engine.feed("last", chunk("done", 1, finish=True))
    engine.feed("last", None)
    assert [d.text for c in await consumer for d in c.choices] == ["done"]
    await closing
    assert engine.cancelled == []


async def test_requests_go_to_the_least_busy_replica_and_wait_while_all_are_full(hub: ChannelHub) -> None:
    engine_a, engine_b = Engine(), Engine()
    async with replica(hub, engine_a), replica(hub, engine_b):
        await until(lambda: len(hub.open_channels(APP, "r1")) == 2)
        route = hub.route(APP, "r1", replicas=2, max_ongoing=1)
        first, second = await route.acquire(), await route.acquire()
        assert first is not None and second is not None and first is not second
        waiting = asyncio.create_task(route.acquire())
        await asyncio.sleep(0.1)
        assert not waiting.done()  # both replicas are at max_ongoing_requests
        engine_a.feed("short", None)  # whichever replica ``first`` is, its request ends at once
        engine_b.feed("short", None)
        assert [c async for c in first.stream(request("short"))] == []
        assert await asyncio.wait_for(waiting, 5) is first


async def test_requests_one_after_another_take_turns_on_idle_replicas(hub: ChannelHub) -> None:
    engine_a, engine_b = Engine(), Engine()
    async with replica(hub, engine_a), replica(hub, engine_b):
        await until(lambda: len(hub.open_channels(APP, "r1")) == 2)
        route = hub.route(APP, "r1", replicas=2, max_ongoing=4)
        used: list[ReplicaChannel] = []
        for n in range(4):
            engine_a.feed(f"q{n}", None)
            engine_b.feed(f"q{n}", None)
            channel = await route.acquire()
            assert channel is not None
            used.append(channel)
            assert [c async for c in channel.stream(request(f"q{n}"))] == []
        assert used[0] is not used[1] and used[0] is used[2] and used[1] is used[3]


async def test_a_release_is_routed_only_to_its_own_replicas(hub: ChannelHub) -> None:
    async with replica(hub, Engine(), release="old"):
        assert await hub.route(APP, "new", replicas=1, max_ongoing=8).acquire() is None
        assert hub.counts() == {APP: 1}


async def test_a_peer_without_the_token_is_refused_before_anything_is_unpickled(hub: ChannelHub) -> None:
    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (exec, (f"import {__name__} as m; m.UNPICKLED.append(1)",))

    assert pickle.loads(pickle.dumps(Exploit())) is None and UNPICKLED == [1]  # it would run if unpickled
    UNPICKLED.clear()
    for opening in (frame(b"x" * 32) + frame(pickle.dumps(Exploit())), (1 << 30).to_bytes(4, "big")):
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        writer.write(opening)  # a wrong token, then an oversized token frame
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the gateway
        writer.close()
    assert UNPICKLED == []
    assert hub.counts() == {}


def test_a_frame_merges_each_streams_consecutive_chunks_and_keeps_order() -> None:
    events = [
        (1, CHUNK, chunk("a", 1, engine_seconds=0.5)),
        (2, CHUNK, chunk("x", 1)),
        (1, CHUNK, chunk("b", 2, finish=True)),
        (1, END, None),
        (2, CHUNK, chunk("y", 2)),
    ]
    merged = batch(events)
    assert [(s, k) for s, k, _ in merged] == [(1, CHUNK), (2, CHUNK), (1, END)]
    first = merged[0][2]
    assert first.choices[0].text == "ab" and first.choices[0].finish_reason == "stop"
    assert first.engine_seconds == 0.5 and first.usage == Usage(3, 2)
    assert merged[1][2].choices[0].text == "xy"
    assert pack(merged)  # every event pickles


async def test_a_replica_that_cannot_reach_the_gateway_keeps_serving_and_stops_cleanly() -> None:
    hub = ChannelHub("127.0.0.1")  # bound, then closed: nothing listens on its port any more
    ticket = hub.ticket(APP, "r1")
    hub.close()
    link = ReplicaLink(ticket, "test-replica", Engine().serve, max_backoff_s=0.05)
    link.start()
    assert not await link.wait_connected(0.5)  # dialling again and again, quietly
    await asyncio.wait_for(link.close(drain_timeout_s=1), 2)
