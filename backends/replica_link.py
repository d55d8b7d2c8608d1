"""The replica's end of the replica channel (wire format in ``backends.channel_wire``).

The replica dials the gateway, authenticates with the gateway's token and then serves the requests that
arrive on the connection, each in its own task. Chunks are not written one by one: they are appended to
an outbox, and one writer task sends the whole outbox as one frame when it next runs, so every chunk an
engine step made ready for any request goes out together. While a frame is still being written, the next
chunks pile up and go in the next frame; nothing waits on purpose.

A lost connection aborts the requests that came over it (their client is gone with it) and the replica
dials again with a capped back-off. On shutdown the replica tells the gateway it is draining, lets the
requests it holds finish, then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from backends.base import EngineRequest, GenerationChunk, merge_chunks
from backends.channel_wire import (
    ABORT,
    CHUNK,
    DRAINING,
    END,
    ERROR,
    GENERATE,
    ChannelTicket,
    Hello,
    frame,
    pack,
    portable_error,
    read_message,
)

logger = logging.getLogger(__name__)

Serve = Callable[[EngineRequest], AsyncIterator[GenerationChunk]]
Event = tuple[int, int, Any]


def batch(events: list[Event]) -> list[Event]:
    """One frame's events with each stream's consecutive chunks merged into one (order kept)."""
    out: list[Event] = []
    last_chunk: dict[int, int] = {}  # stream -> index in ``out`` of its latest unmerged chunk event
    for stream, kind, payload in events:
        at = last_chunk.get(stream)
        if kind == CHUNK and at is not None:
            out[at] = (stream, CHUNK, merge_chunks([out[at][2], payload]))
            continue
        if kind == CHUNK:
            last_chunk[stream] = len(out)
        else:
            last_chunk.pop(stream, None)
        out.append((stream, kind, payload))
    return out


class ReplicaLink:
    """Keeps one channel to the gateway open and serves the requests that come over it."""

    def __init__(
        self,
        ticket: ChannelTicket,
        replica: str,
        serve: Serve,
        max_backoff_s: float = 5.0,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        """``on_lost`` is called when an open connection is lost (the gateway stopped, or moved)."""
        self._ticket = ticket
        self._on_lost = on_lost
        self._hello = Hello(ticket.app, ticket.release, replica)
        self._serve = serve
        self._max_backoff_s = max_backoff_s
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._outbox: list[Event] = []
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._closing = False
        self._dialer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._dialer = asyncio.create_task(self._dial())

    @property
    def open_requests(self) -> int:
        return len(self._tasks)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        return self._connected.is_set()

    async def _dial(self) -> None:
        delay, failures = 0.1, 0
        while not self._closing:
            try:
                reader, writer = await asyncio.open_connection(self._ticket.host, self._ticket.port)
            except OSError as exc:
                failures += 1
                if failures == 1:  # once per outage: Serve's handle serves this replica meanwhile
                    logger.warning(
                        "replica channel cannot reach the gateway app=%s address=%s:%d error=%s",
                        self._ticket.app,
                        self._ticket.host,
                        self._ticket.port,
                        exc,
                    )
            else:
                delay, failures = 0.1, 0
                await self._run_connection(reader, writer)
            if not self._closing:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff_s)

    async def _run_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frame(self._ticket.token) + pack(self._hello))
        flusher = asyncio.create_task(self._flush(writer))
        self._connected.set()
        logger.info("replica channel open app=%s release=%s", self._ticket.app, self._ticket.release)
        try:
            while True:
                kind, stream, request = await read_message(reader)
                if kind == GENERATE:
                    self._tasks[stream] = asyncio.create_task(self._generate(stream, request))
                elif kind == ABORT:
                    task = self._tasks.pop(stream, None)
                    if task is not None:
                        task.cancel()  # the backend aborts the engine request as the cancellation passes
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except Exception as exc:  # a frame this replica cannot read: drop the connection, dial again
            logger.warning("replica channel bad frame app=%s error=%s", self._ticket.app, type(exc).__name__)
        finally:
            self._connected.clear()
            tasks = list(self._tasks.values())
            self._tasks.clear()
            for task in tasks:
                task.cancel()  # their client went with the connection
            flusher.cancel()
            await asyncio.gather(*tasks, flusher, return_exceptions=True)
            self._outbox.clear()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if not self._closing:
                logger.warning("replica channel lost app=%s aborted=%d", self._ticket.app, len(tasks))
                if self._on_lost is not None:
                    self._on_lost()

    async def _generate(self, stream: int, request: EngineRequest) -> None:
        try:
            async for chunk in self._serve(request):
                self._emit((stream, CHUNK, chunk))
            self._emit((stream, END, None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # bad input or an engine failure: the gateway maps it for its client
            self._emit((stream, ERROR, portable_error(exc)))
        finally:
            if self._tasks.get(stream) is asyncio.current_task():
                del self._tasks[stream]

    def _emit(self, event: Event) -> None:
        self._outbox.append(event)
        self._wake.set()

    async def _flush(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            events, self._outbox = self._outbox, []
            if events:
                writer.write(pack(batch(events)))
                await writer.drain()  # chunks that arrive meanwhile go in the next frame

    async def close(self, drain_timeout_s: float) -> None:
        """Tell the gateway to send nothing new, let open requests finish (bounded), then disconnect."""
        if self._connected.is_set():
            self._emit((0, DRAINING, None))
        deadline = asyncio.get_running_loop().time() + drain_timeout_s
        while self._tasks and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        while self._outbox and asyncio.get_running_loop().time() < deadline + 1:
            await asyncio.sleep(0.01)  # the last events reach the socket's buffer, which close() sends
        self._closing = True
        if self._dialer is not None:
            self._dialer.cancel()
            await asyncio.gather(self._dialer, return_exceptions=True)
