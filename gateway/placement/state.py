"""What placement decides from: each deployment's static terms (``DeploymentInfo``, from the catalog), its
live load, and the request."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.catalog.routing import DeploymentInfo
from gateway.catalog.schema import Catalog, ModelEntry

__all__ = [
    "DeploymentInfo",
    "DeploymentLoad",
    "Placement",
    "PlacementRequest",
    "deployment_infos",
]


@dataclass(slots=True)
class DeploymentLoad:
    """A deployment's live state as the gateway holds it at the moment of a decision."""

    in_flight: int
    """Requests its replicas hold now."""
    capacity: int
    """Requests its ready replicas take at once (replicas x max_ongoing_requests; 0 while none is ready)."""
    queued: int = 0
    """Requests waiting in the gateway for one of its slots."""
    queue_limit: int = 0
    """Requests that may wait for it; past them it takes none."""
    slot_seconds: float = 10.0
    """Recent mean time a request holds a slot: turns the queue into a predicted wait."""
    base_ttft_s: float = 0.0
    """Recent time to first token with a free slot (prefill, network, an API's added latency)."""
    unavailable_until: float = 0.0
    """Skipped until then: after a 429 (its Retry-After), a 5xx or a failed start."""

    def has_free_slot(self) -> bool:
        return self.in_flight < self.capacity

    def predicted_ttft_s(self) -> float:
        """TTFT of a request sent now: a free slot's TTFT, plus the wait for a slot when full."""
        if self.in_flight < self.capacity:
            return self.base_ttft_s
        if self.capacity <= 0:
            return math.inf
        return self.base_ttft_s + (self.queued + 1) * self.slot_seconds / self.capacity


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    """What placement needs to know of one request."""

    input_tokens: int
    output_tokens: int
    """Expected completion tokens (max_tokens, or a recent mean): weighs the output price."""
    ttft_slo_s: float | None = None
    """The request's TTFT SLO (its service tier's, ``routing.service_tiers``); None: the model's
    (``routing.ttft_slo_s``). Also its deadline in a deployment's queue."""
    allowed_pools: frozenset[str] | None = None
    """Pools the tenant or key may be served from; None: any."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Deployments to try, by index, in policy order: the first is chosen, the others are the fallback
    before the first byte. Empty: every allowed deployment is unavailable or its queue is full."""

    order: tuple[int, ...]
    spilled: bool
    """The chosen deployment is not owned while the model has an owned one the tenant may use."""


def deployment_infos(catalog: Catalog, entry: ModelEntry) -> tuple[DeploymentInfo, ...]:
    """The placement terms of a model's deployments (``DeploymentInfo.terms``)."""
    return tuple(
        DeploymentInfo(**DeploymentInfo.terms(name, deployment, catalog))
        for name, deployment in zip(entry.deployment_names(), entry.deployments, strict=True)
    )
