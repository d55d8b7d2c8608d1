"""The placement policies (``routing.policy``) over a model's deployments.

A deployment has **headroom** for a request when it is allowed to the tenant, not cooling down, and has a
free slot, or (with a TTFT SLO) its predicted time to first token, queue included, is within the SLO.
Hysteresis: once a deployment was passed over for its predicted TTFT, requests queue on it again only when
the prediction is below ``routing.return_ratio`` of the SLO; a free slot ends that at once (drain back: the
next request goes home; streams in flight are never moved). Deployments without headroom that could still
queue a request follow, so the order is also the fallback before the first byte.

- ``own_first``: owned deployments with headroom (free slots first, least loaded first), then the others
  with headroom by marginal cost of the request, then those without headroom in the same order.
- ``cheapest``: by marginal cost of the request, owned first on a tie.
- ``weighted``: smooth weighted round robin among those with headroom.
- ``ordered``: catalog order.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.catalog.policy import Routing
from gateway.errors import PoolNotAllowed
from gateway.placement.state import DeploymentInfo, DeploymentLoad, Placement, PlacementRequest


class Placer:
    """Places one model's requests. Holds only the policy's memory (hysteresis, round-robin credit):
    loads and the clock are passed in, and nothing here waits or does I/O."""

    def __init__(self, model: str, routing: Routing, deployments: Sequence[DeploymentInfo]) -> None:
        if not deployments:
            raise ValueError("a model has at least one deployment")
        self.model = model
        self.routing = routing
        self.deployments = tuple(deployments)
        self._passed_over = [False] * len(self.deployments)
        self._credit = [0.0] * len(self.deployments)

    def place(self, request: PlacementRequest, loads: Sequence[DeploymentLoad], now: float) -> Placement:
        """The deployments to try for ``request``, in order. Raises ``PoolNotAllowed`` when the tenant may
        use none of the model's pools."""
        deployments = self.deployments
        slo = request.ttft_slo_s if request.ttft_slo_s is not None else self.routing.ttft_slo_s
        allowed = request.allowed_pools
        ready: list[int] = []
        waiting: list[int] = []
        owned_allowed = False
        any_allowed = False
        for i, info in enumerate(deployments):
            if allowed is not None and info.pool not in allowed:
                continue
            any_allowed = True
            owned_allowed = owned_allowed or info.owned
            load = loads[i]
            if load.unavailable_until > now:
                continue
            if load.in_flight < load.capacity:
                self._passed_over[i] = False
                ready.append(i)
                continue
            if load.capacity <= 0 or load.queued >= load.queue_limit:
                continue
            if slo is not None:
                limit = slo * self.routing.return_ratio if self._passed_over[i] else slo
                if load.predicted_ttft_s() <= limit:
                    ready.append(i)
                    continue
                self._passed_over[i] = True
            waiting.append(i)
        if not any_allowed:
            assert allowed is not None
            raise PoolNotAllowed.for_model(self.model, allowed, [d.pool for d in deployments])
        order = self._order(ready, waiting, request, loads)
        spilled = bool(order) and owned_allowed and not deployments[order[0]].owned
        return Placement(order, spilled)

    def _order(
        self, ready: list[int], waiting: list[int], request: PlacementRequest, loads: Sequence[DeploymentLoad]
    ) -> tuple[int, ...]:
        policy = self.routing.policy
        if policy == "ordered":
            return (*ready, *waiting)
        if policy == "weighted":
            pool = ready or waiting
            if not pool:
                return ()
            first = self._weighted_pick(pool)
            rest = sorted((i for i in (*ready, *waiting) if i != first), key=self._by_weight)
            return (first, *rest)
        deployments = self.deployments
        cin, cout = request.input_tokens, request.output_tokens

        def own_first(i: int) -> tuple[float, float, float]:
            info, load = deployments[i], loads[i]
            busy = load.in_flight / load.capacity if load.capacity else 1.0
            if info.owned:
                return (0.0, busy >= 1.0, busy)
            return (1.0, info.cost(cin, cout), busy >= 1.0)

        def cheapest(i: int) -> tuple[float, bool, float]:
            info, load = deployments[i], loads[i]
            busy = load.in_flight / load.capacity if load.capacity else 1.0
            return (info.cost(cin, cout), not info.owned, busy)

        key = own_first if policy == "own_first" else cheapest
        return (*sorted(ready, key=key), *sorted(waiting, key=key))

    def _by_weight(self, i: int) -> tuple[float, int]:
        return (-self.deployments[i].weight, i)

    def _weighted_pick(self, candidates: list[int]) -> int:
        """Smooth weighted round robin (as nginx): each candidate gains its weight, the richest is picked
        and pays the candidates' total; deterministic, and evenly interleaved."""
        credit = self._credit
        total = 0.0
        best = candidates[0]
        for i in candidates:
            weight = self.deployments[i].weight
            credit[i] += weight
            total += weight
            if credit[i] > credit[best]:
                best = i
        credit[best] -= total
        return best
