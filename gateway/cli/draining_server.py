"""uvicorn's server with a drain before it stops: on SIGTERM the gateway keeps its socket open, answers new
requests 503 (``gateway.api.drain``) while those it holds finish, and stops once none is left or the grace
period is over. A second signal, or Ctrl-C, stops it as uvicorn would; so does losing the private Ray head
(every replica with it), after which the command exits non-zero for a supervisor to restart it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from types import FrameType

import uvicorn

from gateway.api.drain import Drain

logger = logging.getLogger("maas")

IDLE_TICK_S = 1.0
"""uvicorn's main loop wakes ten times a second to see whether it should stop; this one wakes once a second
(the resolution of the Date header it keeps), at once on a signal, and ten times a second while draining.
Each wake-up of the front's event loop is taken from the engines on a CPU host."""
DRAIN_TICK_S = 0.1


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        drain: Drain,
        grace_s: float,
        lost: Callable[[], str | None],
        on_drain: Callable[[], None] = lambda: None,
    ) -> None:
        """``lost`` says why the gateway can serve nothing any more (None while it can): it then stops.
        ``on_drain`` runs when a SIGTERM starts the drain (the attached workers are told to drain too)."""
        super().__init__(config)
        self.on_drain = on_drain
        self.drain = drain
        self.grace_s = grace_s
        self.lost = lost
        self._deadline: float | None = None
        self._tick = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._tick.set)  # the main loop looks at once
        if sig == signal.SIGTERM and self._deadline is None:
            self._captured_signals.append(sig)  # re-raised after the shutdown, as uvicorn does
            self._deadline = time.monotonic() + self.grace_s
            self.drain.begin()
            self.on_drain()
            logger.info("draining in_flight=%d grace_s=%.0f", self.drain.in_flight, self.grace_s)
            return
        super().handle_exit(sig, frame)

    async def main_loop(self) -> None:
        """uvicorn's, ticking every ``IDLE_TICK_S`` (``DRAIN_TICK_S`` while draining) or on a signal."""
        self._loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            period = DRAIN_TICK_S if self._deadline is not None else IDLE_TICK_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tick.wait(), period)
            self._tick.clear()
            counter = (counter + round(period / DRAIN_TICK_S)) % 864000  # uvicorn's tenths of a second
            should_exit = await self.on_tick(counter)

    async def on_tick(self, counter: int) -> bool:
        if not self.should_exit and self.lost() is not None:
            self.should_exit = True  # requests in flight have already failed with their replicas
        if self._deadline is not None and not self.should_exit:
            if self.drain.in_flight == 0:
                logger.info("drained: no request left")
                self.should_exit = True
            elif time.monotonic() >= self._deadline:
                logger.warning("grace period over in_flight=%d: stopping", self.drain.in_flight)
                self.should_exit = True
        return await super().on_tick(counter)
