"""Backends that run inside the gateway process: no Ray hop for backends that are only HTTP clients.

An ``openai_upstream`` model's work happens in another server; a Serve replica in between would only add
a process hop, pickling and Ray's router to every request and chunk (measured: the handle hop is most of
the gateway's per-request CPU). A backend class that sets ``RUNS_IN_GATEWAY = True`` is therefore served
from the gateway's own event loop when its deployment asks for no chips.

The backend is started lazily in the serving event loop (its connection pool belongs to that loop); at
deploy time a probe instance is started and stopped in a loop of its own, so a misconfigured upstream
fails the deployment as a bad replica would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from backends.base import Backend, EngineRequest, GenerationChunk, ModelSpec, close_stream, engine_request
from backends.registry import load_backend_class
from backends.replica import timed

logger = logging.getLogger(__name__)


def runs_in_gateway(backend: str, chips_per_replica: float) -> bool:
    """Whether a deployment of ``backend`` is served in the gateway process rather than by replicas."""
    return chips_per_replica == 0 and bool(getattr(load_backend_class(backend), "RUNS_IN_GATEWAY", False))


async def _close(backend: Backend) -> None:
    closer = getattr(backend, "aclose", None)
    if closer is not None:
        await closer()
    else:
        backend.stop()


def probe(spec: ModelSpec, backend: str) -> None:
    """Start and stop one instance in a private event loop; raise what a failing replica would."""

    async def run() -> None:
        instance = load_backend_class(backend).from_spec(spec)
        await instance.start()
        await _close(instance)

    asyncio.run(run())


class LocalModelClient:
    """A ``ModelClient`` for one model whose backend runs in this process."""

    def __init__(self, spec: ModelSpec, backend: str) -> None:
        self.spec = spec
        self.backend_name = backend
        self._backend: Backend | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting = asyncio.Lock()

    async def _ready(self) -> Backend:
        if self._backend is None:
            async with self._starting:
                if self._backend is None:
                    backend = load_backend_class(self.backend_name).from_spec(self.spec)
                    await backend.start()
                    self._loop = asyncio.get_running_loop()
                    self._backend = backend
                    logger.info(
                        "in-gateway backend ready model=%s backend=%s", self.spec.name, self.backend_name
                    )
        return self._backend

    async def generate(self, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        backend = await self._ready()
        chunks = engine_request(backend, request)
        # No hop to cross here, so nothing to coalesce: each chunk goes out as soon as it exists.
        stream = timed(chunks, request.whole, merge_piled_up=False)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await close_stream(stream)
            await close_stream(chunks)  # a client that leaves closes the upstream stream (if not begun)

    def close(self) -> None:
        """Release the backend (from any thread): on its own loop when that loop still runs."""
        backend, loop = self._backend, self._loop
        self._backend = None
        if backend is None:
            return
        if loop is not None and loop.is_running():
            future: Any = asyncio.run_coroutine_threadsafe(_close(backend), loop)
            with contextlib.suppress(Exception):
                future.result(timeout=10)
        else:
            backend.stop()
