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


class _Deadline:
    """One timer for a whole stream, moved lazily: a chunk only pushes the deadline back, and the timer,
    when it fires early, sets itself again for the deadline. ``asyncio.timeout`` around each wait would
    make and cancel a timer per chunk, a dear thing on the event loop at one request at a time."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._waiter: asyncio.Task[object] | None = None
        self._cancelling = 0
        self.expired = False

    def arm(self, seconds: float) -> None:
        """Bound the wait that starts now (in the current task) to ``seconds``."""
        task = asyncio.current_task()
        assert task is not None, "a stream is read in a task"
        self._waiter, self._cancelling = task, task.cancelling()
        self.expired = False  # each wait is judged alone, as a fresh asyncio.timeout would be
        self._deadline = self._loop.time() + seconds
        if self._timer is not None and self._timer.when() > self._deadline:
            self._timer.cancel()  # a shorter bound than the first wait's: the timer must come sooner
            self._timer = None
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._fire)

    def disarm(self) -> None:
        """The wait is over (a chunk, an error or a cancellation)."""
        self._waiter = None

    def timed_out(self) -> bool:
        """After a ``CancelledError`` in the wait: whether this deadline alone cancelled it."""
        if not self.expired or self._waiter is None:
            return False
        return self._waiter.uncancel() <= self._cancelling

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if self._waiter is None:  # nobody waits on the stream now: the next wait sets the timer again
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._fire)
            return
        self.expired = True
        self._waiter.cancel()


async def within(
    chunks: AsyncIterator[GenerationChunk], timeout_s: float, model: str, first_timeout_s: float | None = None
) -> AsyncIterator[GenerationChunk]:
    """``chunks``, each awaited for at most ``timeout_s`` seconds (one timer for the stream, no task); the
    first for ``first_timeout_s`` if longer (a deployment scaled to zero bounds its replica's start
    itself)."""
    wait_s = max(timeout_s, first_timeout_s or 0.0)
    deadline = _Deadline()
    try:
        while True:
            deadline.arm(wait_s)
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if deadline.timed_out():
                    logger.warning("replica stalled model=%s timeout_s=%.0f", model, timeout_s)
                    raise UpstreamTimeout(
                        f"The model replica sent nothing for {timeout_s:.0f} s and was given up on; retry."
                    ) from None
                raise
            finally:
                deadline.disarm()
            wait_s = timeout_s
            if not chunk.keepalive:  # a whole answer's engine is progressing: the timer restarts
                yield chunk
    finally:
        deadline.close()
        with contextlib.suppress(Exception):
            await close_stream(chunks)
