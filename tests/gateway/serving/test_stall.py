"""A replica that stops sending mid-answer ends the request with 504 after the stall timeout, and the
replica's stream is closed (which aborts the request there); a steady stream is untouched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from backends.base import ChoiceDelta, GenerationChunk
from gateway.errors import UpstreamTimeout, openai_error
from gateway.serving.stall import within


async def test_a_stream_that_stalls_ends_with_504_and_is_closed() -> None:
    closed = asyncio.Event()

    async def hung() -> AsyncIterator[GenerationChunk]:
        try:
            yield GenerationChunk(choices=[ChoiceDelta(0, "a")])
            await asyncio.Event().wait()  # the replica stops answering
            yield GenerationChunk()
        finally:
            closed.set()

    received = []
    with pytest.raises(UpstreamTimeout) as info:
        async for chunk in within(hung(), 0.2, "m"):
            received.append(chunk)
    assert len(received) == 1 and closed.is_set()
    assert openai_error(info.value).status == 504


async def test_a_slow_but_steady_stream_is_not_cut() -> None:
    async def steady() -> AsyncIterator[GenerationChunk]:
        for i in range(6):
            await asyncio.sleep(0.05)
            yield GenerationChunk(choices=[ChoiceDelta(0, str(i))])

    texts = [c.choices[0].text async for c in within(steady(), 0.2, "m")]
    assert texts == [str(i) for i in range(6)]  # 0.3 s in all, never 0.2 s between chunks


async def test_the_first_chunk_may_take_a_start_wait_longer_than_the_stall_bound() -> None:
    async def starting() -> AsyncIterator[GenerationChunk]:
        await asyncio.sleep(0.3)  # a replica starting from zero
        for i in range(3):
            yield GenerationChunk(choices=[ChoiceDelta(0, str(i))])

    texts = [c.choices[0].text async for c in within(starting(), 0.1, "m", first_timeout_s=1.0)]
    assert texts == ["0", "1", "2"]


async def test_a_whole_answer_longer_than_the_stall_bound_arrives_while_its_engine_progresses() -> None:
    async def whole_answer() -> AsyncIterator[GenerationChunk]:
        for _ in range(5):  # 0.5 s of generation, a keepalive each 0.1 s, the bound 0.2 s
            await asyncio.sleep(0.1)
            yield GenerationChunk(keepalive=True)
        yield GenerationChunk(choices=[ChoiceDelta(0, "the answer")])

    received = [chunk async for chunk in within(whole_answer(), 0.2, "m")]
    assert [c.choices[0].text for c in received] == ["the answer"]  # keepalives go no further


async def test_after_a_long_first_wait_a_later_stall_ends_at_the_shorter_bound() -> None:
    async def starts_then_hangs() -> AsyncIterator[GenerationChunk]:
        yield GenerationChunk(choices=[ChoiceDelta(0, "a")])
        await asyncio.Event().wait()
        yield GenerationChunk()

    loop = asyncio.get_running_loop()
    received = []
    with pytest.raises(UpstreamTimeout):
        async for chunk in within(starts_then_hangs(), 0.1, "m", first_timeout_s=30):
            received.append(chunk)
            stalled_from = loop.time()
    assert len(received) == 1
    assert loop.time() - stalled_from < 5  # the 0.1 s bound, not the 30 s start wait


async def test_a_slow_reader_between_chunks_is_not_taken_for_a_stalled_replica() -> None:
    async def ready_chunks() -> AsyncIterator[GenerationChunk]:
        for i in range(3):
            yield GenerationChunk(choices=[ChoiceDelta(0, str(i))])

    texts = []
    async for chunk in within(ready_chunks(), 0.05, "m"):
        texts.append(chunk.choices[0].text)
        await asyncio.sleep(0.12)  # the client reads slowly: the replica is not waited on meanwhile
    assert texts == ["0", "1", "2"]


async def test_a_cancelled_reader_is_cancelled_not_timed_out() -> None:
    async def hung() -> AsyncIterator[GenerationChunk]:
        await asyncio.Event().wait()
        yield GenerationChunk()

    async def read() -> None:
        async for _ in within(hung(), 0.2, "m"):
            pass

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.05)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
