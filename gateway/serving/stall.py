"""A replica that stops answering (hung, not dead) must not hang its callers: a stream that brings no
chunk for ``timeout_s`` ends with a 504 and is closed, which aborts the request in the replica. A replica
building a whole (non-streamed) answer sends keepalive chunks while its engine progresses: they restart the
timer and go no further, so a long answer is not taken for a hung replica.

Serve's health check takes a hung replica out in the end; this bounds what each request waits meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from backends.base import GenerationChunk, close_stream
from gateway.errors import UpstreamTimeout

logger = logging.getLogger(__name__)


async def within(
    chunks: AsyncIterator[GenerationChunk], timeout_s: float, model: str, first_timeout_s: float | None = None
) -> AsyncIterator[GenerationChunk]:
    """``chunks``, each awaited for at most ``timeout_s`` seconds (a timer per chunk, no task); the first
    for ``first_timeout_s`` if longer (a deployment scaled to zero bounds its replica's start itself)."""
    wait_s = max(timeout_s, first_timeout_s or 0.0)
    try:
        while True:
            try:
                async with asyncio.timeout(wait_s):
                    chunk = await anext(chunks)
                wait_s = timeout_s
            except StopAsyncIteration:
                return
            except TimeoutError:
                logger.warning("replica stalled model=%s timeout_s=%.0f", model, timeout_s)
                raise UpstreamTimeout(
                    f"The model replica sent nothing for {timeout_s:.0f} s and was given up on; retry."
                ) from None
            if not chunk.keepalive:  # a whole answer's engine is progressing: the timer restarts
                yield chunk
    finally:
        with contextlib.suppress(Exception):
            await close_stream(chunks)
