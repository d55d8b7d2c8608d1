"""Merging and coalescing of backend chunks (pure functions of the streaming contract)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from backends.base import ChoiceDelta, GenerationChunk, TokenLogprob, Usage, merge_chunks
from backends.replica import coalesce, timed


def chunk(index: int, text: str, finish: str | None = None, usage: Usage | None = None) -> GenerationChunk:
    return GenerationChunk(
        choices=[
            ChoiceDelta(index=index, text=text, finish_reason=finish, logprobs=[TokenLogprob(text, -1.0)])  # type: ignore[arg-type]
        ],
        usage=usage,
    )


def test_merge_appends_text_and_logprobs_per_choice_and_keeps_last_usage() -> None:
    merged = merge_chunks(
        [chunk(0, "a"), chunk(1, "x"), chunk(0, "b", "stop"), chunk(1, "y", "length", Usage(3, 4))]
    )
    assert [(c.index, c.text, c.finish_reason) for c in merged.choices] == [
        (0, "ab", "stop"),
        (1, "xy", "length"),
    ]
    assert [lp.token for lp in merged.choices[0].logprobs or []] == ["a", "b"]
    assert merged.usage == Usage(3, 4)


def test_merge_keeps_the_first_chunks_engine_time_stamp() -> None:
    first = GenerationChunk([ChoiceDelta(0, "a")], Usage(1, 1), engine_seconds=0.25)
    later = GenerationChunk([ChoiceDelta(0, "b")], Usage(1, 2), engine_seconds=0.5)
    assert merge_chunks([first, later]).engine_seconds == 0.25
    assert merge_chunks([GenerationChunk([ChoiceDelta(0, "x")]), later]).engine_seconds == 0.5
    assert merge_chunks([GenerationChunk([ChoiceDelta(0, "x")])]).engine_seconds is None


def test_merge_does_not_mutate_its_inputs() -> None:
    first = chunk(0, "a")
    merge_chunks([first, chunk(0, "b")])
    assert first.choices[0].text == "a"
    assert len(first.choices[0].logprobs or []) == 1


async def test_coalesce_passes_chunks_through_when_the_consumer_keeps_up() -> None:
    async def source() -> AsyncIterator[GenerationChunk]:
        for text in "abc":
            await asyncio.sleep(0.01)
            yield chunk(0, text)

    out = [c.choices[0].text async for c in coalesce(source())]
    assert out == ["a", "b", "c"]


async def test_coalesce_merges_what_piled_up_while_the_consumer_was_busy() -> None:
    async def source() -> AsyncIterator[GenerationChunk]:
        for text in "abcdef":
            yield chunk(0, text)
        yield GenerationChunk(choices=[ChoiceDelta(0, "", "stop")], usage=Usage(1, 6))

    texts = []
    async for merged in coalesce(source()):
        texts.append(merged.choices[0].text)
        await asyncio.sleep(0.05)  # slow consumer
    assert "".join(texts) == "abcdef"
    assert len(texts) < 6


async def test_coalesce_raises_the_source_error_after_what_came_before() -> None:
    async def source() -> AsyncIterator[GenerationChunk]:
        yield chunk(0, "a")
        await asyncio.sleep(0.01)
        raise RuntimeError("engine died")

    got = []
    with pytest.raises(RuntimeError, match="engine died"):
        async for merged in coalesce(source()):
            got.append(merged.choices[0].text)
    assert got == ["a"]


async def test_closing_coalesce_cancels_the_source() -> None:
    cancelled = asyncio.Event()

    async def source() -> AsyncIterator[GenerationChunk]:
        try:
            while True:
                yield chunk(0, "t")
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    stream = coalesce(source())
    await anext(stream)
    await stream.aclose()
    await asyncio.wait_for(cancelled.wait(), 1)


async def slow_source(delay: float, count: int) -> AsyncIterator[GenerationChunk]:
    for i in range(count):
        await asyncio.sleep(delay)
        yield GenerationChunk([ChoiceDelta(0, f"t{i}")], Usage(1, i + 1))


async def test_replica_stamps_the_backends_own_time_on_the_first_chunk_only() -> None:
    streamed = [chunk async for chunk in timed(slow_source(0.05, 3), whole=False)]
    assert streamed[0].engine_seconds is not None and streamed[0].engine_seconds >= 0.05
    assert all(chunk.engine_seconds is None for chunk in streamed[1:])
    (whole,) = [chunk async for chunk in timed(slow_source(0.05, 3), whole=True)]
    assert whole.engine_seconds is not None and whole.engine_seconds >= 0.15  # all of a whole answer
    assert whole.choices[0].text == "t0t1t2"


async def test_a_long_whole_answer_says_its_engine_progresses_and_a_hung_one_says_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("backends.replica.KEEPALIVE_S", 0.05)
    sent = [chunk async for chunk in timed(slow_source(0.03, 8), whole=True)]  # 0.24 s of generation
    *keepalives, whole = sent
    assert 2 <= len(keepalives) <= 4 and all(c.keepalive and not c.choices for c in keepalives)
    assert not whole.keepalive and whole.choices[0].text == "".join(f"t{i}" for i in range(8))

    async def hung() -> AsyncIterator[GenerationChunk]:
        yield GenerationChunk([ChoiceDelta(0, "t0")])
        await asyncio.sleep(0.3)  # the engine stopped: nothing progresses
        yield GenerationChunk([ChoiceDelta(0, "t1")])

    stream = timed(hung(), whole=True)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await anext(stream)  # no keepalive while nothing is generated
    await stream.aclose()


def test_a_keepalive_merged_with_content_is_content_and_keepalives_alone_stay_one() -> None:
    keepalive = GenerationChunk(keepalive=True)
    assert not merge_chunks([keepalive, chunk(0, "a")]).keepalive
    assert merge_chunks([keepalive, keepalive]).keepalive
    assert not merge_chunks([]).keepalive
