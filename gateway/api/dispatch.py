"""Sending one call to a deployment of its model: placement, a slot of that deployment, the replica's first
chunk, and the fallback before the first byte.

Placement orders the model's deployments (``gateway.placement``); each is tried in turn until one sends
its first chunk. A deployment that is unavailable, answers 5xx or 429, is full, or stalls before its first
chunk is skipped for the next, and remembered as unavailable for a while; the client sees one answer and
the ledger one record, naming the deployment that answered and the attempts. A caller's error (4xx) is
not retried. The last deployment in order whose replica was lost before the first chunk (a node gone, a
replica replaced) is tried once more: its other replicas take the call. After the first chunk nothing
moves: errors are the stream's own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from backends.base import EngineRequest, GenerationChunk, close_stream
from gateway.billing.overload import ModelGate, ModelGates, gated
from gateway.catalog.routing import Route, RoutedModel
from gateway.errors import Overloaded, ReplicaLost, ServiceError, as_gateway_error, openai_error
from gateway.placement.live import LivePlacement
from gateway.placement.state import DeploymentLoad, PlacementRequest
from gateway.serving.stall import within
from gateway.streaming import first_chunk

logger = logging.getLogger(__name__)


@dataclass
class Answer:
    """The deployment that answered, its first chunk and the rest of its stream."""

    route: Route
    first: GenerationChunk | None
    chunks: AsyncIterator[GenerationChunk]
    attempts: int
    """Deployments asked, the one that answered included."""


class Failed(Exception):
    """Every deployment tried failed before its first chunk: ``error`` is the last one's."""

    def __init__(self, error: ServiceError, route: Route, attempts: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.route = route
        self.attempts = attempts


def loads(model: RoutedModel, gates: ModelGates) -> list[DeploymentLoad]:
    """Each deployment's load as its gateway queue holds it now."""
    return [_load(r, gates.gate(r.name, r.capacity, r.queue_limit)) for r in model.routes]


def _load(route: Route, gate: ModelGate) -> DeploymentLoad:
    ready = getattr(route.client, "ready_replicas", None)
    down = ready is not None and ready() == 0  # its replicas' channels are all gone: none is serving
    return DeploymentLoad(
        in_flight=gate.running,
        capacity=0 if down else gate.capacity,
        queued=gate.queued,
        queue_limit=gate.max_queued,
        slot_seconds=gate.hold_s,
    )


def _falls_back(error: ServiceError) -> bool:
    """Whether the next deployment may take the call: the deployment failed, the caller did not."""
    return isinstance(error, Overloaded) or openai_error(error).status >= 500


def _retry_after(error: ServiceError) -> float | None:
    value = (error.headers or {}).get("Retry-After")
    return float(value) if value and value.isdigit() else None


async def dispatch(
    model: RoutedModel,
    request: EngineRequest,
    tenant: str,
    placement_request: PlacementRequest,
    gates: ModelGates,
    placement: LivePlacement,
) -> Answer:
    """The first deployment in placement order that answers ``request``; raises ``Failed`` when none
    does, and placement's refusals (``PoolNotAllowed``) as they are."""
    several = len(model.routes) > 1  # one deployment: nothing to weigh
    order: Sequence[Route] = placement.place(model, placement_request, loads(model, gates) if several else ())
    if several and (getattr(request, "tools", None) or getattr(request, "structured", None)):
        # Tools and response formats go only to deployments that can do them (the model has one).
        order = [r for r in order if r.serves(request)] or [r for r in model.routes if r.serves(request)][:1]
    if not order:  # every allowed deployment is unavailable or its queue is full: the first one refuses
        order = model.routes[:1]
    attempt, retried = 0, False
    at = 0
    while at < len(order):
        route, last = order[at], at == len(order) - 1
        attempt += 1
        gate = gates.gate(route.name, route.capacity, route.queue_limit)
        queued = gate.running >= gate.capacity or gate.queued > 0
        asked = time.perf_counter()
        replica = within(
            route.client.generate(request), route.stall_timeout_s, model.name, route.start_wait_s
        )
        chunks = gated(gate.slot(tenant, placement_request.ttft_slo_s), replica)
        try:
            first = await first_chunk(chunks)
        except Exception as exc:
            error = as_gateway_error(exc)
            await close_stream(chunks)
            if last and isinstance(error, ReplicaLost) and not retried:
                # Nowhere else to fall back to, and only one replica of the deployment died (a node lost,
                # a replica replaced): once more on the same deployment, which routes around it.
                retried = True
                logger.warning("retry model=%s on=%s: its replica was lost", model.name, route.name)
                continue
            if last or not _falls_back(error):
                raise Failed(error, route, attempt) from exc
            placement.failed(model, route, _retry_after(error))
            logger.warning(
                "fallback model=%s from=%s error=%s attempt=%d",
                model.name,
                route.name,
                type(error).__name__,
                attempt,
            )
            at += 1
            continue
        placement.answered(model, route, time.perf_counter() - asked, queued)
        return Answer(route, first, chunks, attempt)
    raise AssertionError("placement returned no deployment")  # order is never empty
