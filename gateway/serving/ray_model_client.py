"""A model's client in the gateway for replicas that Ray Serve runs: channels first, Serve's handle else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from backends.base import EngineRequest, GenerationChunk
from gateway.errors import ModelStarting
from gateway.serving.replica_channels import ChannelRoute

logger = logging.getLogger(__name__)

WAIT_LOG_EVERY_S = 10.0
"""While a request waits this long for its first chunk on Serve's handle (a replica starting, as when a
deployment scales up from zero), the gateway logs that it is still waiting, and again every as long."""


class RayModelClient:
    """Streams from one model's replicas: over their channels when all are open, else Serve's handle."""

    def __init__(
        self,
        handle: Any,
        route: ChannelRoute | None = None,
        name: str = "",
        start_wait_s: float | None = None,
        running: Callable[[], int | None] = lambda: None,
    ) -> None:
        """``start_wait_s``: for a deployment that scales to zero, how long a request waits for a replica
        while ``running`` (its replicas running, None while unknown) says none runs; past it the request
        is answered ``ModelStarting`` (503 with Retry-After) and the replica goes on starting."""
        self._name = name
        self._start_wait_s = start_wait_s
        self._running = running
        self._last_start_s: float | None = None  # how long the last start from zero took to answer
        self._app_handle = handle
        self._handle: Any = None
        self._route = route
        self._channels_seen = False

    def ready_replicas(self) -> int | None:
        """Replicas with an open channel now; None while unknown (channels are off, or none was ever
        open: replicas that cannot reach the gateway use Serve's handle). A replica that dies drops its
        channel at once, well before Serve's health check notices."""
        if self._route is None:
            return None
        count = self._route.open_count()
        self._channels_seen = self._channels_seen or count > 0
        return count if self._channels_seen else None

    async def generate(self, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        channel = None if self._route is None else await self._route.acquire()
        if channel is not None:
            async with contextlib.aclosing(channel.stream(request)) as chunks:  # leaving early aborts
                async for chunk in chunks:
                    yield chunk
            return
        if self._handle is None:  # made in the serving loop: the handle's router runs in that loop
            # Requests and chunks go over Serve's direct gRPC channel to the replica, pickled, instead of
            # Ray actor calls and object refs: measured, about half the CPU per request and per chunk.
            self._handle = self._app_handle.options(
                stream=True,
                _by_reference=False,
                request_serialization="pickle",
                response_serialization="pickle",
            )
        cold = self._start_wait_s is not None and self._running() == 0
        response = self._handle.generate.remote(request)
        finished = False
        waiting = _WaitLog(self._name)
        try:
            chunks = aiter(response)
            if cold:
                yield await self._first_after_start(chunks)
            async for chunk in chunks:
                waiting.cancel()
                yield chunk
            finished = True
        except StopAsyncIteration:
            finished = True
        finally:
            waiting.cancel()
            if not finished:
                response.cancel()  # the replica aborts the engine request

    async def _first_after_start(self, chunks: AsyncIterator[GenerationChunk]) -> GenerationChunk:
        """The first chunk from a deployment that had no replica running, within ``start_wait_s``."""
        assert self._start_wait_s is not None
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._start_wait_s):
                first = await anext(chunks)
        except TimeoutError:
            # Retry once a start has had the time the last one took (unknown: as long again).
            expected = self._last_start_s if self._last_start_s is not None else 2 * self._start_wait_s
            logger.warning(
                "no replica started in time deployment=%s waited_s=%.0f", self._name, self._start_wait_s
            )
            raise ModelStarting.now(self._name, self._start_wait_s, expected - self._start_wait_s) from None
        self._last_start_s = time.monotonic() - started
        logger.info("replica started from zero deployment=%s after_s=%.1f", self._name, self._last_start_s)
        return first


class _WaitLog:
    """Logs, every ``WAIT_LOG_EVERY_S`` until cancelled, that a request still waits for its replica."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._started = time.monotonic()
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            WAIT_LOG_EVERY_S, self._log
        )

    def _log(self) -> None:
        logger.info(
            "waiting for a replica deployment=%s waited_s=%.0f (one is starting, or scaling up from zero)",
            self._name,
            time.monotonic() - self._started,
        )
        self._timer = asyncio.get_running_loop().call_later(WAIT_LOG_EVERY_S, self._log)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
