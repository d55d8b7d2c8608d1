"""The gateway's end of the replica channels (wire format and why in ``backends.channel_wire``).

The gateway listens on one port; each model replica dials it (and every other gateway of the installation,
``backends.replica_links``) and keeps one connection open. Requests go
out over the connection of the least busy replica of the model's current release, and each frame that
comes back is split into the requests' inboxes. A request's consumer takes everything its inbox holds at
once, merged into one chunk.

Serve still places, health-checks and restarts the replicas. A model is served over channels only while
every replica its release asks for has one open; otherwise (a replica restarting, a node that cannot reach
the gateway, the channel switched off) its requests take Serve's handle, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import pickle
import secrets
import socket
from collections import defaultdict
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from backends.base import EngineRequest, GenerationChunk, merge_chunks
from backends.channel_wire import (
    ABORT,
    CHUNK,
    DRAINING,
    END,
    ERROR,
    GENERATE,
    TOKEN_FRAME_MAX,
    ChannelTicket,
    GatewayAddress,
    Hello,
    pack,
    read_frame,
)
from gateway.errors import replica_lost

logger = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0


class Inbox:
    """Events for one request, taken all at once by its consumer."""

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: list[tuple[int, Any]] = []
        self.waiter: asyncio.Future[None] | None = None

    def push(self, kind: int, payload: Any) -> None:
        self.items.append((kind, payload))
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> list[tuple[int, Any]]:
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        items, self.items = self.items, []
        return items


class ReplicaChannel:
    """One replica's open connection: sends requests, demultiplexes the frames that come back."""

    def __init__(self, hello: Hello, writer: asyncio.StreamWriter, on_free: asyncio.Event) -> None:
        self.hello = hello
        self.in_flight = 0
        self.draining = False
        self.closed = False
        self._writer = writer
        self._on_free = on_free
        self._streams: dict[int, Inbox] = {}
        self._ids = itertools.count(1)

    async def read(self, reader: asyncio.StreamReader) -> None:
        """Dispatch frames until the connection ends; then fail the requests still open on it."""
        streams = self._streams
        try:
            while True:
                for stream, kind, payload in pickle.loads(await read_frame(reader)):
                    inbox = streams.get(stream)
                    if inbox is not None:
                        inbox.push(kind, payload)
                    elif kind == DRAINING:
                        self.draining = True
                        logger.info("replica draining app=%s replica=%s", self.hello.app, self.hello.replica)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except Exception as exc:  # a frame that cannot be read: this connection is not trusted further
            logger.warning(
                "replica channel bad frame app=%s replica=%s error=%s",
                self.hello.app,
                self.hello.replica,
                type(exc).__name__,
            )
        finally:
            self.closed = True
            for inbox in streams.values():
                inbox.push(ERROR, replica_lost())
            self._writer.close()

    def abort(self) -> None:
        self._writer.transport.abort()

    async def stream(self, request: EngineRequest) -> AsyncGenerator[GenerationChunk, None]:
        """The replica's chunks for ``request``; leaving early aborts it there. The caller has already
        counted it in ``in_flight`` (``ChannelRoute.acquire``)."""
        stream_id = next(self._ids)
        inbox = self._streams[stream_id] = Inbox()
        finished = False
        try:
            if self.closed:
                raise replica_lost()
            self._writer.write(pack((GENERATE, stream_id, request)))
            while not finished:
                chunks: list[GenerationChunk] = []
                error: BaseException | None = None
                for kind, payload in await inbox.take():
                    if kind == CHUNK:
                        chunks.append(payload)
                    elif kind == END:
                        finished = True
                    elif kind == ERROR:
                        finished, error = True, payload
                if chunks:
                    yield chunks[0] if len(chunks) == 1 else merge_chunks(chunks)
                if error is not None:
                    raise error
        finally:
            del self._streams[stream_id]
            self.in_flight -= 1
            self._on_free.set()
            if not finished and not self.closed:
                self._writer.write(pack((ABORT, stream_id, None)))


@dataclass(frozen=True)
class ChannelRoute:
    """Where one deployment release's requests go: the least busy of its replicas' channels."""

    hub: ChannelHub
    app: str
    release: str
    replicas: int
    max_ongoing: int
    turns: itertools.count[int] = field(default_factory=itertools.count, compare=False)

    def open_count(self) -> int:
        return len(self.hub.open_channels(self.app, self.release))

    async def acquire(self) -> ReplicaChannel | None:
        """A channel with room, counted as busy; ``None`` when not every replica has one (use Serve's
        handle). While every replica is at its limit, waits as Serve's router would."""
        while True:
            channels = self.hub.open_channels(self.app, self.release)
            if len(channels) < self.replicas:
                return None
            turn = next(self.turns) % len(channels)  # ties go round the replicas, not always to the first
            channel = min(channels[turn:] + channels[:turn], key=lambda c: c.in_flight)
            if channel.in_flight < self.max_ongoing:
                channel.in_flight += 1
                return channel
            freed = self.hub.freed(self.app)
            freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(freed.wait(), 1.0)  # also re-checks replicas coming and going


class ChannelHub:
    """The port replicas dial, and the channels open on it by application and release."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._token = secrets.token_bytes(32)
        # Bound and listening now, so replicas that start before the serving loop runs are held in the
        # backlog until ``serve`` accepts them there.
        self._sock = socket.create_server((host, 0), backlog=128)
        self.port: int = self._sock.getsockname()[1]
        self._channels: dict[tuple[str, str], list[ReplicaChannel]] = defaultdict(list)
        self._freed: dict[str, asyncio.Event] = {}
        self._server: asyncio.Server | None = None

    def address(self, gateway: str) -> GatewayAddress:
        """What replicas need to reach this hub (listed in the gateway directory as ``gateway``)."""
        return GatewayAddress(gateway, self.host, self.port, self._token)

    def ticket(self, app: str, release: str) -> ChannelTicket:
        return self.address("").ticket(app, release)

    def route(self, app: str, release: str, replicas: int, max_ongoing: int) -> ChannelRoute:
        return ChannelRoute(self, app, release, replicas, max_ongoing)

    async def serve(self) -> None:
        """Accept replicas' connections in the running loop (the one that serves requests)."""
        self._server = await asyncio.start_server(self._accept, sock=self._sock)

    def open_channels(self, app: str, release: str) -> list[ReplicaChannel]:
        return [c for c in self._channels.get((app, release), ()) if not c.closed and not c.draining]

    def counts(self) -> dict[str, int]:
        """Open, not draining channels per application (all releases)."""
        counts: dict[str, int] = defaultdict(int)
        for (app, _), channels in self._channels.items():
            counts[app] += sum(1 for c in channels if not c.closed and not c.draining)
        return dict(counts)

    def freed(self, app: str) -> asyncio.Event:
        return self._freed.setdefault(app, asyncio.Event())

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                token = await read_frame(reader, TOKEN_FRAME_MAX)
                if not hmac.compare_digest(token, self._token):
                    logger.warning("replica channel refused peer=%s reason=bad-token", peer)
                    writer.close()
                    return
                hello = pickle.loads(await read_frame(reader))
            if not isinstance(hello, Hello):
                raise TypeError(type(hello).__name__)
        except Exception as exc:
            logger.warning("replica channel refused peer=%s reason=%s", peer, type(exc).__name__)
            writer.close()
            return
        channel = ReplicaChannel(hello, writer, self.freed(hello.app))
        key = (hello.app, hello.release)
        self._channels[key].append(channel)
        logger.info("replica channel open app=%s release=%s replica=%s", *key, hello.replica)
        try:
            await channel.read(reader)
        except asyncio.CancelledError:
            # The serving loop is stopping: end quietly (asyncio's stream callback would log a cancelled
            # task as an error); the channel's requests have already failed in ``read``.
            pass
        finally:
            self._channels[key].remove(channel)
            if not self._channels[key]:
                del self._channels[key]
            logger.info("replica channel closed app=%s release=%s replica=%s", *key, hello.replica)

    def close(self) -> None:
        """Stop listening and drop every channel (their open requests fail as unavailable)."""
        if self._server is not None:
            self._server.close()
        else:
            self._sock.close()
        for channels in list(self._channels.values()):
            for channel in channels:
                with contextlib.suppress(RuntimeError):  # its loop may already be closed
                    channel.abort()
