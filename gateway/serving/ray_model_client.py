"""A model's client in the gateway for replicas that Ray Serve runs: channels first, Serve's handle else."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from backends.base import EngineRequest, GenerationChunk
from gateway.serving.replica_channels import ChannelRoute


class RayModelClient:
    """Streams from one model's replicas: over their channels when all are open, else Serve's handle."""

    def __init__(self, handle: Any, route: ChannelRoute | None = None) -> None:
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
        response = self._handle.generate.remote(request)
        finished = False
        try:
            async for chunk in response:
                yield chunk
            finished = True
        finally:
            if not finished:
                response.cancel()  # the replica aborts the engine request
