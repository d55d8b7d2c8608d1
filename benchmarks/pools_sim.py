"""The pools simulator's engine: one policy through a trace, with the gateway's own placement code.

The cloud is modelled (this is a simulator): the own pool's replicas and rented chip-hour replicas are
slots that hold a request for its prefill and decode at a fixed rate, with a queue in front; the
rented API adds latency and answers 429 past its per-minute limits (the gateway then skips it until the
minute ends, as a Retry-After says). What decides is not modelled: each request is placed by
``gateway.placement.Placer`` over the catalog's deployments, rented chip-hours are rented and released
by ``gateway.placement.RentalPlanner`` (the oracle instead rents from the known future), and a queue is
the gateway's own ``DeadlineQueue``: the trace is one tenant's traffic, whose requests ask for their SLO
tier with ``service_tier``, so the gateway's queue serves them earliest deadline first.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from benchmarks.pools_trace import TIERS_S, Shape, Trace, base_fraction
from gateway.billing.deadline_queue import DeadlineQueue
from gateway.catalog.policy import Routing
from gateway.catalog.schema import Catalog, parse_catalog
from gateway.placement.policies import Placer
from gateway.placement.rental import Rental, RentalPlanner
from gateway.placement.state import DeploymentLoad, PlacementRequest, deployment_infos

OWN, RENTED, API = 0, 1, 2
_FINISH, _READY, _TICK, _ORACLE_RELEASE = 0, 1, 2, 3
RATE_WINDOW_S = 10.0  # arrivals counted over this window give the demand the rental planner sizes to


@dataclass(frozen=True)
class World:
    """The simulated cloud's terms (the prices are also the catalog's)."""

    own_replicas: int = 4
    slots_per_replica: int = 16
    rented_max_replicas: int = 12
    cold_start_s: float = 120.0
    api_added_s: float = 0.12
    api_tokens_per_s: float = 50.0
    api_rpm: int = 600
    api_tpm: int = 500_000
    retry_after_429_s: float = 0.05  # a 429 comes back this fast; the next deployment is tried
    own_queue_per_slot: int = 4  # max_queued_requests of the own deployment, per slot: batch requests wait
    shape: Shape = field(default_factory=Shape)

    @property
    def own_slots(self) -> int:
        return self.own_replicas * self.slots_per_replica


def catalog_for(world: World) -> Catalog:
    """The simulated model as a real catalog, validated by the gateway's own schema."""
    tokens_per_second = world.slots_per_replica * world.shape.stream_tokens_per_s
    per_replica = {"chip": "nvidia", "chips_per_replica": 1, "max_ongoing_requests": world.slots_per_replica}
    own_queue = world.own_slots * world.own_queue_per_slot
    data: dict[str, Any] = {
        "pools": [
            {
                "name": "own",
                "kind": "owned",
                "chips": {
                    "nvidia": {
                        "purchase_price": 10000,
                        "power_and_hosting_per_hour": 0.12,
                        "power_per_hour": 0.08,
                    }
                },
            },
            {
                "name": "rented",
                "kind": "managed",
                "chips": {"nvidia": {"hourly_fee": 1.2}},
                "billing_granularity_minutes": 1,
                "minimum_rental_minutes": 10,
            },
            {
                "name": "api",
                "kind": "managed",
                "per_token": {
                    "input_per_million": 0.42,
                    "output_per_million": 1.7,
                    "requests_per_minute": world.api_rpm,
                    "tokens_per_minute": world.api_tpm,
                },
            },
        ],
        "models": [
            {
                "name": "sim",
                "family": "qwen",
                "context_length": 8192,
                "weights": {"kind": "local", "path": "/nonexistent"},
                "pricing": {"input_per_million": 0.5, "output_per_million": 2.0},
                "deployments": [
                    {
                        **per_replica,
                        "pool": "own",
                        "replicas": world.own_replicas,
                        "max_queued_requests": own_queue,
                        "tokens_per_second": tokens_per_second,
                    },
                    {
                        **per_replica,
                        "pool": "rented",
                        "replicas": world.rented_max_replicas,
                        "tokens_per_second": tokens_per_second,
                    },
                    {
                        "backend": "openai_upstream",
                        "pool": "api",
                        "engine": {"base_url": "http://127.0.0.1:9/v1", "model": "sim"},
                    },
                ],
            }
        ],
    }
    return parse_catalog(data, "pools simulator")


@dataclass
class Run:
    """What happened to each request, and to the rented capacity."""

    ttft: list[float]
    served_by: list[int]  # -1: refused
    rented_while_own_free: list[bool]
    own_busy_slot_s: float = 0.0
    rented_chip_s_billed: float = 0.0
    api_429s: int = 0
    actions: list[tuple[float, str, int]] = field(default_factory=list)
    placement_ns: int = 0


class Simulation:
    def __init__(
        self,
        trace: Trace,
        world: World,
        routing: Routing,
        oracle: bool = False,
        weights: dict[int, float] | None = None,
    ) -> None:
        self.trace, self.world, self.oracle = trace, world, oracle
        self.catalog = catalog_for(world)
        entry = self.catalog.models[0]
        infos = deployment_infos(self.catalog, entry)
        if weights is not None:
            infos = tuple(replace(info, weight=weights[d]) for d, info in enumerate(infos))
        self.placer = Placer(entry.name, routing, infos)
        rented_pool = self.catalog.pool("rented")
        assert rented_pool is not None
        self.rented_pool = rented_pool
        self.planner = RentalPlanner(rented_pool, world.slots_per_replica, world.rented_max_replicas)
        shape = world.shape
        mean_hold = shape.hold_s(int(shape.input_mean), int(shape.output_mean))
        slots = world.own_slots
        own = entry.deployments[OWN]
        self.loads = [
            DeploymentLoad(
                0,
                slots,
                queue_limit=own.queue_limit,
                slot_seconds=mean_hold,
                base_ttft_s=shape.prefill_s(500),
            ),
            DeploymentLoad(0, 0, queue_limit=slots, slot_seconds=mean_hold, base_ttft_s=shape.prefill_s(500)),
            DeploymentLoad(0, 1 << 30, queue_limit=0, base_ttft_s=shape.prefill_s(500) + world.api_added_s),
        ]
        self.queues: list[DeadlineQueue[tuple[int, float, float]]] = [DeadlineQueue() for _ in range(3)]
        self.rentals: list[Rental] = []
        self.events: list[tuple[float, int, int, int]] = []
        n = len(trace.times)
        self.run = Run([math.inf] * n, [-1] * n, [False] * n)
        self._minute = -1
        self._arrivals: deque[float] = deque()
        self._minute_requests = 0
        self._minute_tokens = 0

    def simulate(self) -> Run:
        trace, events = self.trace, self.events
        for t in range(1, int(trace.duration_s)):
            events.append((float(t), _TICK, 0, 0))
        if self.oracle:
            self._oracle_rentals()
        heapq.heapify(events)
        for i, arrival in enumerate(trace.times):
            while events and events[0][0] <= arrival:
                self._event(*heapq.heappop(events))
            self._arrive(i, arrival)
        while events:
            self._event(*heapq.heappop(events))
        for rental in self.rentals:  # the day ends: what is still rented is paid to here
            self.run.rented_chip_s_billed += self.rented_pool.billed_seconds(
                trace.duration_s - rental.rented_at
            )
        return self.run

    def _arrive(self, i: int, now: float) -> None:
        trace, loads, run = self.trace, self.loads, self.run
        inp, out = trace.inputs[i], trace.outputs[i]
        self._arrivals.append(now)
        request = PlacementRequest(inp, out, TIERS_S[trace.tiers[i]])
        started = time.perf_counter_ns()
        order = self.placer.place(request, loads, now).order
        run.placement_ns += time.perf_counter_ns() - started
        own_free = loads[OWN].in_flight < loads[OWN].capacity
        delay = 0.0
        for d in order:
            load = loads[d]
            if d == API:
                if not self._api_admits(now, inp + out):
                    run.api_429s += 1
                    load.unavailable_until = (self._minute + 1) * 60.0
                    delay += self.world.retry_after_429_s
                    continue
                load.in_flight += 1
                run.ttft[i] = delay + self.world.api_added_s + self.world.shape.prefill_s(inp)
                self._push(now + run.ttft[i] + out / self.world.api_tokens_per_s, _FINISH, API, i)
            elif load.in_flight < load.capacity:
                self._start(d, i, now, now, delay)
            elif len(self.queues[d]) < load.queue_limit:
                self.queues[d].push((i, now, delay), now + TIERS_S[trace.tiers[i]])
                load.queued += 1
            else:
                continue
            run.served_by[i] = d
            run.rented_while_own_free[i] = d != OWN and own_free
            return

    def _api_admits(self, now: float, tokens: int) -> bool:
        minute = int(now // 60)
        if minute != self._minute:
            self._minute, self._minute_requests, self._minute_tokens = minute, 0, 0
        if self._minute_requests >= self.world.api_rpm or self._minute_tokens + tokens > self.world.api_tpm:
            return False
        self._minute_requests += 1
        self._minute_tokens += tokens
        return True

    def _start(self, d: int, i: int, now: float, arrived: float, delay: float) -> None:
        shape, trace = self.world.shape, self.trace
        hold = shape.hold_s(trace.inputs[i], trace.outputs[i])
        self.loads[d].in_flight += 1
        self.run.ttft[i] = now - arrived + delay + shape.prefill_s(trace.inputs[i])
        if d == OWN:
            self.run.own_busy_slot_s += hold
        self._push(now + hold, _FINISH, d, i)

    def _push(self, when: float, kind: int, a: int, b: int) -> None:
        heapq.heappush(self.events, (when, kind, a, b))

    def _event(self, now: float, kind: int, a: int, b: int) -> None:
        if kind == _FINISH:
            load = self.loads[a]
            load.in_flight -= 1
            self._drain_queue(a, now)
        elif kind == _READY:
            self.loads[RENTED].capacity += self.world.slots_per_replica
            self._drain_queue(RENTED, now)
        elif kind == _TICK and not self.oracle:
            self._plan(now)
        elif kind == _ORACLE_RELEASE:  # a: when its replicas were rented, b: how many
            self._release([r for r in range(len(self.rentals)) if self.rentals[r].rented_at == a][:b], now)

    def _drain_queue(self, d: int, now: float) -> None:
        load, queue = self.loads[d], self.queues[d]
        while queue and load.in_flight < load.capacity:
            i, arrived, delay = queue.popleft()
            load.queued -= 1
            self._start(d, i, now, arrived, delay)

    def _plan(self, now: float) -> None:
        # the concurrency the demand needs (Little: arrivals per second x seconds a request holds a slot),
        # beyond the own capacity; not the queue, which grows while rented replicas start
        window = self._arrivals
        while window and window[0] < now - RATE_WINDOW_S:
            window.popleft()
        demand = len(window) / RATE_WINDOW_S * self.loads[OWN].slot_seconds
        plan = self.planner.plan(now, demand - self.loads[OWN].capacity, self.rentals)
        if plan.rent:
            self._rent(plan.rent, now)
        if plan.release:
            self._release(list(plan.release), now)

    def _rent(self, count: int, now: float) -> None:
        for _ in range(count):
            self.rentals.append(Rental(now, now + self.world.cold_start_s))
            self._push(now + self.world.cold_start_s, _READY, 0, 0)
        self.run.actions.append((now, "rent", count))

    def _release(self, indices: list[int], now: float) -> None:
        if not indices:
            return
        for i in sorted(indices, reverse=True):
            rental = self.rentals.pop(i)
            self.run.rented_chip_s_billed += self.rented_pool.billed_seconds(now - rental.rented_at)
            if rental.ready_at <= now:
                self.loads[RENTED].capacity -= self.world.slots_per_replica
        self.run.actions.append((now, "release", len(indices)))

    def _oracle_rentals(self) -> None:
        """Rent for each pulse from its known size: ready as it starts, released as it ends, and only where
        renting is cheaper than the API or the API's rate limit could not take the overflow."""
        world, trace = self.world, self.trace
        mean_hold = self.loads[OWN].slot_seconds
        for pulse in trace.pulses:
            peak = (
                max(base_fraction(t, trace.duration_s) for t in (pulse.start, pulse.end)) * pulse.multiplier
            )
            overflow_rps = max(0.0, peak - 1.0) * trace.capacity_rps
            if overflow_rps <= 0:
                continue
            replicas = min(
                world.rented_max_replicas, math.ceil(overflow_rps * mean_hold * 1.1 / world.slots_per_replica)
            )
            length = pulse.end - pulse.start
            fee = float(self.rented_pool.chip_hour_cost("nvidia")) / 3600
            rent_cost = replicas * fee * self.rented_pool.billed_seconds(length + world.cold_start_s)
            api = self.catalog.pool("api")
            assert api is not None and api.per_token is not None
            per_request = api.per_token.input_per_million * Decimal(world.shape.input_mean) + (
                api.per_token.output_per_million * Decimal(world.shape.output_mean)
            )
            api_cost = overflow_rps * length * float(per_request) / 1e6
            if rent_cost > api_cost and overflow_rps < world.api_rpm / 60:
                continue
            at = float(int(pulse.start - world.cold_start_s))
            for _ in range(replicas):
                self.rentals.append(Rental(at, at + world.cold_start_s))
                self.events.append((at + world.cold_start_s, _READY, 0, 0))
            self.run.actions.append((at, "rent", replicas))
            self.events.append((pulse.end + 30, _ORACLE_RELEASE, int(at), replicas))
