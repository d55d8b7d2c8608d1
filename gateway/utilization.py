"""Replica time, busy time and infrastructure cost per deployment, accrued as time passes.

A deployment's replicas cost their pool's replica-hour price whether busy or idle; a replica counts as
busy while it holds a request (with n requests in flight on R replicas, min(n, R) are busy). Revenue comes
from the ledger's charges; cost from here; margin is the difference, per model, chip and pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from gateway.catalog import Catalog
from gateway.telemetry import GatewayMetrics


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
        self.tick()
        with self._lock:
            self._in_flight[model] = self._in_flight.get(model, 0) + 1
            self._metrics.in_flight.labels(model).set(self._in_flight[model])

    def finished(self, model: str) -> None:
        self.tick()
        with self._lock:
            self._in_flight[model] = max(0, self._in_flight.get(model, 0) - 1)
            self._metrics.in_flight.labels(model).set(self._in_flight[model])

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
                if elapsed <= 0:
                    continue
                busy = min(self._in_flight.get(d.model, 0), d.replicas)
                self._metrics.replica_seconds.labels(*labels).inc(elapsed * d.replicas)
                self._metrics.busy_seconds.labels(*labels).inc(elapsed * busy)
                cost = float(d.replica_hour_cost) * d.replicas * elapsed / 3600
                self._metrics.infra_cost.labels(*labels, d.currency).inc(cost)
