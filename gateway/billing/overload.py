"""A bounded queue per model, shared fairly between tenants.

Each model takes at most ``capacity`` requests at once (its replicas times ``max_ongoing_requests``); up to
``max_queued`` more wait here, in the gateway, in one queue per tenant. Past that a new request is refused
at once, never left to wait until its client times out:

* with other tenants waiting or running, the newcomer's tenant is over its share: 429 ``TenantOverShare``;
  but when another tenant holds more of the queue than the newcomer's would, that tenant's waiting request
  with the latest deadline (its newest among equals) is refused instead and the newcomer takes its place,
  so one tenant flooding cannot fill the queue against a quiet one;
* alone on the model, the model is saturated: 503 ``ModelSaturated``.

A freed slot goes to the tenant with the fewest requests running (among equals, the one served longest
ago), so tenants get equal shares of a saturated model whatever their rates; within a tenant, to its
request with the earliest deadline (``deadline_queue``: arrival plus its service tier's TTFT SLO), so a
tenant's interactive requests pass its own batch requests but never another tenant's share. Both
refusals carry ``Retry-After``: the time the queue ahead took to drain lately. Everything runs on one
event loop; no locks.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from backends.base import GenerationChunk, close_stream
from gateway.billing.deadline_queue import DeadlineQueue
from gateway.errors import ModelSaturated, ServiceError, TenantOverShare

_HOLD_EWMA = 0.2  # weight of the newest slot-hold time in the moving average
_MAX_RETRY_AFTER_S = 60


@dataclass
class _Waiter:
    tenant: str
    granted: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ModelGate:
    """Slots of one model: ``async with gate.slot(tenant)`` holds one while a request runs."""

    def __init__(
        self, name: str, capacity: int, max_queued: int, clock: Callable[[], float] = time.monotonic
    ):
        self.name = name
        self.capacity = capacity
        self.max_queued = max_queued
        self._clock = clock
        self._running: dict[str, int] = {}
        self._queues: dict[str, DeadlineQueue[_Waiter]] = {}
        self._hold_s = 1.0  # moving average of how long a slot is held
        self._turns = 0
        self._last_turn: dict[str, int] = {}  # tenant -> the turn it was last given a slot

    @property
    def running(self) -> int:
        return sum(self._running.values())

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    @property
    def hold_s(self) -> float:
        """Recent mean time a request holds a slot."""
        return self._hold_s

    def resize(self, capacity: int, max_queued: int) -> None:
        """New limits (a catalog change); waiters move up at once if there is room."""
        self.capacity, self.max_queued = capacity, max_queued
        self._grant()

    def slot(self, tenant: str, ttft_slo_s: float | None = None) -> _Slot:
        return _Slot(self, tenant, ttft_slo_s)

    async def enter(self, tenant: str, ttft_slo_s: float | None = None) -> None:
        """Take a slot, waiting in the tenant's queue if need be (by deadline: now plus ``ttft_slo_s``;
        none: behind those with one); raise a refusal if the queue is full."""
        if self.running < self.capacity and (not self._queues or not self.queued):  # no waiter: no sum
            self._take(tenant)
            return
        if self.queued >= self.max_queued:
            self._make_room(tenant)
        waiter = _Waiter(tenant)
        deadline = math.inf if ttft_slo_s is None else self._clock() + ttft_slo_s
        self._queues.setdefault(tenant, DeadlineQueue()).push(waiter, deadline)
        try:
            await waiter.granted
        except BaseException:
            if (
                waiter.granted.done()
                and not waiter.granted.cancelled()
                and waiter.granted.exception() is None
            ):
                self.leave(tenant, held_s=None)  # granted just as the caller gave up: give it back
            else:
                self._forget(waiter)
            raise

    def leave(self, tenant: str, held_s: float | None) -> None:
        left = self._running.get(tenant, 0) - 1
        if left > 0:
            self._running[tenant] = left
        else:
            self._running.pop(tenant, None)
        if held_s is not None:
            self._hold_s += _HOLD_EWMA * (held_s - self._hold_s)
        self._grant()

    def retry_after_s(self) -> float:
        """How long the queue ahead of a new request would take to drain, by the recent hold times."""
        rounds = (self.queued + 1) / max(1, self.capacity)
        return min(_MAX_RETRY_AFTER_S, max(1.0, math.ceil(self._hold_s * rounds)))

    def _take(self, tenant: str) -> None:
        self._running[tenant] = self._running.get(tenant, 0) + 1
        self._turns += 1
        self._last_turn[tenant] = self._turns

    def _make_room(self, tenant: str) -> None:
        """The queue is full: refuse the newcomer, or the newest waiter of a tenant holding more."""
        mine = len(self._queues.get(tenant, ()))
        biggest = max(self._queues, key=lambda t: (len(self._queues[t]), t != tenant), default=None)
        if biggest is not None and biggest != tenant and len(self._queues[biggest]) > mine + 1:
            victim = self._queues[biggest].pop_latest()
            if not self._queues[biggest]:
                del self._queues[biggest]
            victim.granted.set_exception(self._over_share(biggest))
            return
        others = any(t != tenant for t in (*self._running, *self._queues))
        raise self._over_share(tenant) if others else self._saturated()

    def _grant(self) -> None:
        while self._queues and self.running < self.capacity:  # nobody waits: nothing to count
            # The tenant with the fewest running goes first; among equals, the one served longest ago.
            tenant = min(self._queues, key=lambda t: (self._running.get(t, 0), self._last_turn.get(t, -1)))
            waiter = self._queues[tenant].popleft()
            if not self._queues[tenant]:
                del self._queues[tenant]
            if waiter.granted.done():  # its caller already left
                continue
            self._take(tenant)
            waiter.granted.set_result(None)

    def _forget(self, waiter: _Waiter) -> None:
        queue = self._queues.get(waiter.tenant)
        if queue is not None and queue.remove(waiter) and not queue:
            del self._queues[waiter.tenant]

    def _over_share(self, tenant: str) -> ServiceError:
        return TenantOverShare.now(self.name, self.retry_after_s())

    def _saturated(self) -> ServiceError:
        return ModelSaturated.now(self.name, self.retry_after_s())


class _Slot:
    """One request's hold on a slot of its model, from ``enter`` until it is released."""

    def __init__(self, gate: ModelGate, tenant: str, ttft_slo_s: float | None = None) -> None:
        self._gate = gate
        self._tenant = tenant
        self._ttft_slo_s = ttft_slo_s
        self._since: float | None = None

    async def __aenter__(self) -> _Slot:
        await self._gate.enter(self._tenant, self._ttft_slo_s)
        self._since = self._gate._clock()
        return self

    async def __aexit__(self, *_: object) -> None:
        self.release()

    def release(self) -> None:
        """Give the slot back (once; later calls do nothing)."""
        if self._since is not None:
            held = self._gate._clock() - self._since
            self._since = None
            self._gate.leave(self._tenant, held)


async def gated(slot: _Slot, chunks: AsyncIterator[GenerationChunk]) -> AsyncIterator[GenerationChunk]:
    """``chunks`` once a slot is held, which waits (or is refused) at the first chunk, before any
    answer starts; the slot is freed when the stream ends or is closed."""
    async with slot:
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await close_stream(chunks)


class ModelGates:
    """The gate of every deployment (by its name), kept across catalog changes so counts survive them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._gates: dict[str, ModelGate] = {}
        self._clock = clock

    def gate(self, model: str, capacity: int, max_queued: int) -> ModelGate:
        gate = self._gates.get(model)
        if gate is None:
            gate = self._gates[model] = ModelGate(model, capacity, max_queued, self._clock)
        elif (gate.capacity, gate.max_queued) != (capacity, max_queued):
            gate.resize(capacity, max_queued)
        return gate

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {
            name: {
                "running": g.running,
                "queued": g.queued,
                "capacity": g.capacity,
                "max_queued": g.max_queued,
            }
            for name, g in self._gates.items()
        }
