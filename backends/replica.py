"""The Ray Serve replica that hosts one backend for one model deployment.

Requests arrive over replica channels (``backends.replica_links``: one to every gateway of the
installation) when the replica was deployed with an invite, and through Serve's streaming
``DeploymentHandle`` (``generate``) otherwise or meanwhile. Every
chunk that crosses the handle costs CPU (about 1.5 ms here), so on that path the replica coalesces: chunks
that pile up while the previous one is still being sent go out merged as one, and a whole (non-streamed)
answer goes out as a single chunk (with a keepalive every quarter second while its engine progresses).
No chunk is ever delayed on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator

from backends.base import (
    Backend,
    EngineRequest,
    GenerationChunk,
    ModelSpec,
    close_stream,
    engine_request,
    merge_chunks,
)
from backends.channel_wire import ChannelInvite
from backends.errors import EngineDead
from backends.placement import Placement, place_replica
from backends.registry import load_backend_class
from backends.replica_links import ReplicaLinks, directory_lookup
from backends.serve_grpc import bind_replica_grpc_to_node_address

logger = logging.getLogger(__name__)

_END = object()
EXIT_DELAY_S = 0.5  # after its engine died, before the replica's process ends
KEEPALIVE_S = 0.25
"""While a whole answer is generated, how often at most the replica says its engine is progressing: well
below any deployment's ``stall_timeout_s`` (at least 1 s), one token's time included."""


async def coalesce(source: AsyncIterator[GenerationChunk]) -> AsyncIterator[GenerationChunk]:
    """Yield ``source``'s chunks, merging those that arrived while the consumer was busy."""
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for chunk in source:
                queue.put_nowait(chunk)
            queue.put_nowait(_END)
        except Exception as exc:  # handed to the consumer, raised there
            queue.put_nowait(exc)

    task = asyncio.create_task(pump())
    try:
        while True:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            chunks = [item for item in items if isinstance(item, GenerationChunk)]
            if chunks:
                yield merge_chunks(chunks)
            last = items[-1]
            if last is _END:
                return
            if isinstance(last, Exception):
                raise last
    finally:
        if not task.done():
            task.cancel()  # the engine request is aborted as the cancellation passes through it
            await asyncio.gather(task, return_exceptions=True)


def _whole_already(pieces: list[GenerationChunk]) -> bool:
    """A backend that answers whole sends one chunk: nothing to fold when it holds at most one choice and
    no tool-call fragments (folding sorts choices and joins fragments)."""
    if len(pieces) != 1:
        return False
    choices = pieces[0].choices
    return not choices or (len(choices) == 1 and choices[0].tool_calls is None)


async def timed(
    source: AsyncIterator[GenerationChunk], whole: bool, merge_piled_up: bool = True
) -> AsyncIterator[GenerationChunk]:
    """``source`` as one merged chunk (``whole``) or streamed (coalesced unless ``merge_piled_up`` is
    false), the first chunk stamped with the backend's own time."""
    started = time.perf_counter()
    if whole:
        pieces, said = [], started
        try:
            async for chunk in source:
                pieces.append(chunk)
                if (now := time.perf_counter()) - said >= KEEPALIVE_S:  # the engine made progress: say so
                    said = now
                    yield GenerationChunk(keepalive=True)
        finally:
            await close_stream(source)
        merged = pieces[0] if _whole_already(pieces) else merge_chunks(pieces)
        merged.engine_seconds = time.perf_counter() - started
        yield merged
        return
    first = True
    stream = coalesce(source) if merge_piled_up else source
    try:
        async for chunk in stream:
            if first:
                chunk.engine_seconds, first = time.perf_counter() - started, False
            yield chunk
    finally:
        await close_stream(stream)


class ModelReplica:
    """Ray Serve deployment class: one backend instance per replica (Serve awaits the async constructor)."""

    DRAIN_TIMEOUT_S = 25.0  # within the deployment's graceful_shutdown_timeout_s

    async def __init__(  # type: ignore[misc]
        self, spec: ModelSpec, backend: str, invite: ChannelInvite | None = None
    ) -> None:
        started = time.monotonic()
        bind_replica_grpc_to_node_address()
        self._spec = spec
        self._links: ReplicaLinks | None = None
        self._exiting = False
        self._placement: Placement = place_replica(spec)  # before the engine reads its visible devices
        self._backend: Backend = load_backend_class(backend).from_spec(spec)
        await self._backend.start()
        if invite is not None:
            replica = f"{socket.gethostname()}:{os.getpid()}"
            self._links = ReplicaLinks(invite, replica, self._stream, directory_lookup(invite))
            self._links.start()
        logger.info(
            "replica ready model=%s backend=%s chip=%s devices=%s seconds=%.1f",
            spec.name,
            backend,
            spec.chip,
            self._placement.devices,
            time.monotonic() - started,
        )

    async def generate(self, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        """Stream chunks for ``request``; for a ``whole`` request send one merged chunk at the end."""
        stream = timed(self._guarded(request), request.whole)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await close_stream(stream)

    def _stream(self, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        # The channel batches every ready chunk per frame itself: no coalescing task per request.
        return timed(self._guarded(request), request.whole, merge_piled_up=False)

    async def _guarded(self, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        """The backend's chunks; an engine that died ends this replica, so that Serve replaces it now
        rather than after its health checks have failed for half a minute."""
        chunks = engine_request(self._backend, request)
        try:
            async for chunk in chunks:
                yield chunk
        except EngineDead:
            self._exit_for_replacement()
            raise
        finally:
            await close_stream(chunks)

    def _exit_for_replacement(self) -> None:
        if self._exiting:
            return
        self._exiting = True
        logger.error("engine died model=%s: replica exits to be replaced", self._spec.name)
        # Long enough for this error to reach its caller; every other request on the replica is lost
        # with the engine anyway, and ends as the replica's connection drops.
        asyncio.get_running_loop().call_later(EXIT_DELAY_S, os._exit, 1)

    async def check_health(self) -> None:
        await self._backend.check_health()

    async def __del__(self) -> None:
        """Serve's graceful shutdown: requests on the channel finish first (Serve only waits for its own)."""
        links = getattr(self, "_links", None)
        if links is not None:
            await links.close(self.DRAIN_TIMEOUT_S)
        backend = getattr(self, "_backend", None)
        if backend is not None:
            backend.stop()
