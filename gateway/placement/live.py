"""Placement of live requests: the policy (``policies.Placer``) over a routed model's deployments, with the
load the gateway holds now and what it remembers of each deployment's recent answers.

The gateway's own queues give each deployment's in-flight and queued requests and how long a slot is held
(passed in as ``DeploymentLoad``); this adds each deployment's recent time to first token with a free slot
and the time until which it is skipped after failing before its first byte (a 429 or 5xx, a lost replica,
a stall). Nothing here waits or does I/O: a decision is a few microseconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.catalog.routing import Route, RoutedModel
from gateway.errors import PoolNotAllowed
from gateway.placement.policies import Placer
from gateway.placement.state import DeploymentLoad, Placement, PlacementRequest

logger = logging.getLogger(__name__)

FAILURE_COOLDOWN_S = 5.0
"""How long a deployment that failed before its first byte is skipped (its Retry-After when it sent one)."""
_TTFT_EWMA = 0.2


@dataclass
class _Memory:
    """What placement remembers of one deployment across requests."""

    base_ttft_s: float = 0.0
    unavailable_until: float = 0.0


@dataclass
class _ModelPlacement:
    routes: tuple[Route, ...]
    placer: Placer
    was_spilling: bool = False
    memory: dict[str, _Memory] = field(default_factory=dict)


class LivePlacement:
    """The placers of every model, renewed when a model's routes change (a catalog change)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_spill: Callable[[RoutedModel, bool], None] = lambda model, spilling: None,
    ) -> None:
        self._clock = clock
        self._models: dict[str, _ModelPlacement] = {}
        self._on_spill = on_spill
        self.events: dict[str, dict[str, int]] = {}
        """Spill and drain-back events by model, since start."""

    def _state(self, model: RoutedModel) -> _ModelPlacement:
        state = self._models.get(model.name)
        if state is None or state.routes is not model.routes:
            state = _ModelPlacement(model.routes, Placer(model.name, model.routing, model.routes))
            state.memory = {r.name: _Memory() for r in model.routes}
            self._models[model.name] = state
        return state

    def place(
        self, model: RoutedModel, request: PlacementRequest, loads: Sequence[DeploymentLoad]
    ) -> tuple[Route, ...]:
        """The routes to try, in order: the first is chosen, the rest are the fallback before the first
        byte. Raises ``PoolNotAllowed`` when the request may use none of the model's pools."""
        routes = model.routes
        if len(routes) == 1:  # one deployment: nothing to choose
            allowed = request.allowed_pools
            if allowed is not None and routes[0].pool not in allowed:
                raise PoolNotAllowed.for_model(model.name, allowed, [routes[0].pool])
            return routes
        state = self._state(model)
        now = self._clock()
        for route, load in zip(routes, loads, strict=True):
            memory = state.memory[route.name]
            load.base_ttft_s = memory.base_ttft_s
            load.unavailable_until = memory.unavailable_until
        placement: Placement = state.placer.place(request, loads, now)
        if placement.spilled != state.was_spilling:
            state.was_spilling = placement.spilled
            logger.info(
                "placement %s model=%s to=%s",
                "spill" if placement.spilled else "drain_back",
                model.name,
                routes[placement.order[0]].name if placement.order else "-",
            )
            counts = self.events.setdefault(model.name, {"spill": 0, "drain_back": 0})
            counts["spill" if placement.spilled else "drain_back"] += 1
            self._on_spill(model, placement.spilled)
        return tuple(routes[i] for i in placement.order)

    def failed(self, model: RoutedModel, route: Route, retry_after_s: float | None = None) -> None:
        """``route`` failed before its first byte: skip it for a while."""
        if len(model.routes) == 1:
            return
        memory = self._state(model).memory.get(route.name)
        if memory is not None:
            memory.unavailable_until = self._clock() + (retry_after_s or FAILURE_COOLDOWN_S)

    def answered(self, model: RoutedModel, route: Route, ttft_s: float, queued: bool) -> None:
        """``route`` sent its first byte ``ttft_s`` after it was asked; ``queued``: the request waited
        for a slot first (that wait is not the deployment's own TTFT)."""
        if len(model.routes) == 1:
            return
        memory = self._state(model).memory.get(route.name)
        if memory is None:
            return
        memory.unavailable_until = 0.0
        if not queued:
            memory.base_ttft_s += _TTFT_EWMA * (ttft_s - memory.base_ttft_s)
