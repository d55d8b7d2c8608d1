"""Server-sent events for streamed answers.

The first backend chunk is awaited before the response starts, so errors that happen before any token
(bad input, no replica) still get their proper status. After the 200, an error becomes an SSE
``data: {"error": ...}`` event followed by ``data: [DONE]``; a stream is never cut silently.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from backends.base import ChoiceDelta, GenerationChunk, Usage, close_stream
from gateway.billing.metering import Meter, Progress
from gateway.errors import as_gateway_error, openai_error

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


@dataclass(frozen=True)
class StreamEncoder:
    """What the endpoint needs to turn chunks into events (chat and completions differ)."""

    preamble: dict[str, Any] | None
    delta: Callable[[list[ChoiceDelta]], dict[str, Any] | None]
    usage: Callable[[Usage], dict[str, Any]]
    include_usage: bool


async def first_chunk(chunks: AsyncIterator[GenerationChunk]) -> GenerationChunk | None:
    """Await the first chunk; errors raised here still become a normal error response."""
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return None


async def sse_stream(
    first: GenerationChunk | None,
    rest: AsyncIterator[GenerationChunk],
    encoder: StreamEncoder,
    meter: Meter,
) -> AsyncIterator[bytes]:
    """Encode a stream. The usage record is durable before the final events; a client that goes away
    is billed for what it was sent."""
    progress = Progress()
    try:
        if encoder.preamble is not None:
            yield sse(encoder.preamble)
        chunk = first
        while chunk is not None:
            progress.observe(chunk)
            event = encoder.delta(chunk.choices)
            if event is not None:
                yield sse(event)
            chunk = await anext(rest, None)
        await meter.settle(progress, "ok")
        if encoder.include_usage and progress.usage is not None:
            yield sse(encoder.usage(progress.usage))
        yield DONE
    except Exception as exc:
        error = as_gateway_error(exc)
        logger.warning("stream failed after the first byte error=%s", type(exc).__name__)
        await meter.settle(progress, "error", type(error).__name__)
        yield sse(openai_error(error).body())
        yield DONE
    finally:
        meter.settle_nowait(progress, "cancelled")  # no-op when already settled
        await close_stream(rest)
