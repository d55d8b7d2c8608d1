"""SSE framing: errors after the first byte become an error event, never a silently cut stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from backends.base import ChoiceDelta, GenerationChunk, Usage
from gateway.billing.ledger import Ledger, UsageQuery
from gateway.billing.metering import Meter
from gateway.errors import BackendUnavailable
from gateway.protocol.responses import ChatFormatter
from gateway.streaming import DONE, StreamEncoder, first_chunk, sse_stream


def encoder(include_usage: bool) -> StreamEncoder:
    formatter = ChatFormatter("chatcmpl-1", "m", 1)
    return StreamEncoder(formatter.role_chunk(), formatter.delta_chunk, formatter.usage_chunk, include_usage)


def events(raw: list[bytes]) -> list[object]:
    out: list[object] = []
    for item in raw:
        assert item.startswith(b"data: ") and item.endswith(b"\n\n")
        payload = item[6:-2]
        out.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return out


async def test_stream_ends_with_usage_chunk_and_done_after_the_record_is_durable(
    make_meter: Callable[..., Meter], ledger: Ledger
) -> None:
    async def source() -> AsyncIterator[GenerationChunk]:
        yield GenerationChunk([ChoiceDelta(0, "Hi")], Usage(5, 1))
        yield GenerationChunk([ChoiceDelta(0, "!", "stop")], Usage(5, 2))

    chunks = source()
    raw = []
    async for event in sse_stream(await first_chunk(chunks), chunks, encoder(True), make_meter()):
        if event == DONE:
            assert ledger.store.count() == 1  # durable before the stream completes
        raw.append(event)
    parsed = events(raw)
    assert parsed[-1] == "[DONE]" and raw[-1] == DONE
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}  # type: ignore[index]
    texts = [e["choices"][0]["delta"].get("content") for e in parsed[1:3]]  # type: ignore[index]
    assert texts == ["Hi", "!"]
    assert parsed[-2]["choices"] == [] and parsed[-2]["usage"]["total_tokens"] == 7  # type: ignore[index]
    [row] = await ledger.query(UsageQuery(group_by=("model",)))
    assert (row.requests, row.prompt_tokens, row.completion_tokens) == (1, 5, 2)
    assert row.charge_nanos == 5 * 1000 + 2 * 2000  # 1 and 2 per 1M tokens


async def test_error_after_first_chunk_is_an_sse_error_event_and_bills_what_was_sent(
    make_meter: Callable[..., Meter], ledger: Ledger
) -> None:
    async def source() -> AsyncIterator[GenerationChunk]:
        yield GenerationChunk([ChoiceDelta(0, "partial")], Usage(4, 3))
        raise BackendUnavailable("replica stopped")

    chunks = source()
    raw = [b async for b in sse_stream(await first_chunk(chunks), chunks, encoder(False), make_meter())]
    parsed = events(raw)
    assert parsed[-1] == "[DONE]"
    error = parsed[-2]["error"]  # type: ignore[index]
    assert error["code"] == "backend_unavailable" and error["message"] == "replica stopped"
    [row] = await ledger.query(UsageQuery(group_by=("model",)))
    assert (row.prompt_tokens, row.completion_tokens) == (4, 3)


async def test_unexpected_errors_do_not_leak_internals(make_meter: Callable[..., Meter]) -> None:
    async def source() -> AsyncIterator[GenerationChunk]:
        yield GenerationChunk([ChoiceDelta(0, "x")])
        raise KeyError("/secret/path")

    chunks = source()
    raw = [b async for b in sse_stream(await first_chunk(chunks), chunks, encoder(False), make_meter())]
    error = events(raw)[-2]["error"]  # type: ignore[index]
    assert "secret" not in error["message"] and error["type"] == "server_error"


def test_errors_wrapped_by_ray_are_unwrapped_to_the_replica_error() -> None:
    from ray.exceptions import RayTaskError

    from gateway.errors import ContextLengthExceeded, as_gateway_error, openai_error

    cause = ContextLengthExceeded("too long", param="messages")
    wrapped = RayTaskError("generate", "traceback", cause).as_instanceof_cause()
    error = as_gateway_error(wrapped)
    assert type(error) is ContextLengthExceeded
    assert openai_error(error).body()["error"]["param"] == "messages"


async def test_client_that_leaves_mid_stream_is_billed_for_what_it_was_sent(
    make_meter: Callable[..., Meter], ledger: Ledger
) -> None:
    async def source() -> AsyncIterator[GenerationChunk]:
        for n in range(1, 100):
            yield GenerationChunk([ChoiceDelta(0, "t")], Usage(10, n))

    chunks = source()
    stream = sse_stream(await first_chunk(chunks), chunks, encoder(False), make_meter())
    for _ in range(4):  # the role event, then three tokens
        await anext(stream)
    await stream.aclose()  # what Starlette does when the client disconnects
    for _ in range(200):
        if ledger.store.count():
            break
        await asyncio.sleep(0.01)
    [row] = await ledger.query(UsageQuery(group_by=("model",)))
    assert (row.requests, row.prompt_tokens, row.completion_tokens) == (1, 10, 3)
