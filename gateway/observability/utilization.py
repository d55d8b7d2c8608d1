"""Replica time, busy time and infrastructure cost per deployment, accrued as time passes.

A deployment's replicas cost their pool's replica-hour price whether busy or idle; a replica counts as
busy while it holds a request (with n requests in flight on R replicas, min(n, R) are busy). Revenue comes
from the ledger's charges; cost from here; margin is the difference, per model, chip and pool.

On the request path only the request's own model is touched (its in-flight count and the busy time
since its last change); replica time and cost of every deployment accrue at ``tick``, which the metrics
scrape and the dashboard call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from gateway.catalog.schema import Catalog
from gateway.observability.metrics import GatewayMetrics


@dataclass(frozen=True)
class DeploymentCost:
    model: str
    chip: str
    pool: str
    replicas: int
    currency: str
    replica_hour_cost: Decimal


def deployment_costs(catalog: Catalog) -> list[DeploymentCost]:
    costs = []
    for model in catalog.models:
        deployment = model.deployments[0]
        pool = catalog.pool(deployment.pool)
        hourly = (
            Decimal(0)
            if pool is None
            else pool.replica_hour_cost(deployment.chip, deployment.chips_per_replica)
        )
        currency = pool.currency if pool is not None else model.pricing.currency
        costs.append(
            DeploymentCost(
                model.name, deployment.chip, deployment.pool, deployment.replicas, currency, hourly
            )
        )
    return costs


class UtilizationMeter:
    def __init__(
        self,
        metrics: GatewayMetrics,
        deployments: list[DeploymentCost],
        healthy: Callable[[], dict[str, int]] = dict,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._healthy = healthy
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._busy_since: dict[str, float] = {}
        self._deployments: dict[str, DeploymentCost] = {}
        self._last = clock()
        self.configure(deployments)

    def configure(self, deployments: list[DeploymentCost]) -> None:
        """Set what runs (at start and after a catalog change); time so far is accrued first."""
        self.tick()
        with self._lock:
            gone = set(self._deployments) - {d.model for d in deployments}
            for name in gone:
                old = self._deployments[name]
                self._metrics.replicas.labels(old.model, old.chip, old.pool).set(0)
                self._metrics.replicas_healthy.labels(old.model, old.chip, old.pool).set(0)
            self._deployments = {d.model: d for d in deployments}
            for d in deployments:
                self._metrics.replicas.labels(d.model, d.chip, d.pool).set(d.replicas)

    def started(self, model: str) -> None:
        self._change_in_flight(model, +1)

    def finished(self, model: str) -> None:
        self._change_in_flight(model, -1)

    def _change_in_flight(self, model: str, change: int) -> None:
        with self._lock:
            self._accrue_busy(model, self._clock())  # at the old level, up to now
            self._in_flight[model] = max(0, self._in_flight.get(model, 0) + change)
            self._metrics.in_flight.labels(model).set(self._in_flight[model])

    def _accrue_busy(self, model: str, now: float) -> None:
        """Busy time of ``model``'s replicas since its last change (the caller holds the lock)."""
        last = self._busy_since.get(model, self._last)
        self._busy_since[model] = now
        d = self._deployments.get(model)
        if d is None:
            return
        busy = min(self._in_flight.get(model, 0), d.replicas)
        if busy and now > last:
            self._metrics.busy_seconds.labels(d.model, d.chip, d.pool).inc((now - last) * busy)

    def waiting(self, model: str, change: int) -> None:
        """A request starts (+1) or stops (-1) waiting for its first token."""
        self._metrics.queued.labels(model).inc(change)

    def tick(self) -> None:
        """Accrue replica time, busy time and cost since the last tick."""
        healthy = self._healthy()
        with self._lock:
            now = self._clock()
            elapsed, self._last = now - self._last, now
            for d in self._deployments.values():
                labels = (d.model, d.chip, d.pool)
                if d.model in healthy:
                    self._metrics.replicas_healthy.labels(*labels).set(healthy[d.model])
                self._accrue_busy(d.model, now)
                if elapsed <= 0:
                    continue
                self._metrics.replica_seconds.labels(*labels).inc(elapsed * d.replicas)
                cost = float(d.replica_hour_cost) * d.replicas * elapsed / 3600
                self._metrics.infra_cost.labels(*labels, d.currency).inc(cost)
