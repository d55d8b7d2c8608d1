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

from gateway.catalog.pools import TokenCost
from gateway.catalog.schema import Catalog
from gateway.observability.metrics import GatewayMetrics


@dataclass(frozen=True)
class DeploymentCost:
    name: str
    """The deployment's name (``ModelEntry.deployment_names``)."""
    model: str
    chip: str
    pool: str
    replicas: int
    currency: str
    replica_hour_cost: Decimal
    autoscaled: bool = False
    """Its replica count is the autoscaler's: replica time follows the healthy replicas, not ``replicas``."""
    per_token: TokenCost | None = None
    """A rented API: it costs per token served, not per replica-hour."""
    pool_kind: str = "owned"


def deployment_costs(catalog: Catalog) -> list[DeploymentCost]:
    costs = []
    for model in catalog.models:
        for name, deployment in zip(model.deployment_names(), model.deployments, strict=True):
            pool = catalog.pool(deployment.pool)
            per_token = None
            if pool is not None and pool.per_token is not None:
                per_token = pool.token_cost(
                    deployment.chip, deployment.chips_per_replica, None, marginal=True
                )
            hourly = (
                Decimal(0)
                if pool is None or per_token is not None  # an API is paid per token, as it serves
                else pool.replica_hour_cost(deployment.chip, deployment.chips_per_replica)
            )
            currency = pool.currency if pool is not None else model.pricing.currency
            costs.append(
                DeploymentCost(
                    name,
                    model.name,
                    deployment.chip,
                    deployment.pool,
                    deployment.max_replicas,
                    currency,
                    hourly,
                    autoscaled=deployment.autoscaling is not None,
                    per_token=per_token,
                    pool_kind=pool.kind if pool is not None else "owned",
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
        accounts: Callable[[], bool] = lambda: True,
    ) -> None:
        """``accounts`` says whether this gateway accrues replica time and chip-hour cost: of several
        gateways in front of the same replicas one does (``Membership.accounts_for_replicas``), so that
        their metrics summed count each replica-second once; every gateway counts its own requests."""
        self._metrics = metrics
        self._accounts = accounts
        self._healthy = healthy
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._waiting: dict[str, int] = {}  # model -> requests without their first token
        self._busy_since: dict[str, float] = {}
        self._busy_unwritten: dict[str, float] = {}  # deployment -> busy seconds not in the metric yet
        self._at_collect = metrics.update_at_collect
        self._deployments: dict[str, DeploymentCost] = {}
        self._last = clock()
        self.configure(deployments)
        if self._at_collect:
            metrics.registry.before_collect(self._write_live)

    def configure(self, deployments: list[DeploymentCost]) -> None:
        """Set what runs (at start and after a catalog change); time so far is accrued (and written) first."""
        self.tick()
        self._write_live()
        with self._lock:
            gone = set(self._deployments) - {d.name for d in deployments}
            for name in gone:
                labels = _labels(self._deployments[name])
                self._metrics.replicas.labels(*labels).set(0)
                self._metrics.replicas_healthy.labels(*labels).set(0)
            self._deployments = {d.name: d for d in deployments}
            for d in deployments:
                self._metrics.replicas.labels(*_labels(d)).set(d.replicas)
                self._metrics.pool_info.labels(d.pool, d.pool_kind).set(1)

    def deployments(self) -> list[DeploymentCost]:
        return list(self._deployments.values())

    def in_flight(self, deployment: str) -> int:
        return self._in_flight.get(deployment, 0)

    def started(self, deployment: str) -> None:
        self._change_in_flight(deployment, +1)

    def finished(self, deployment: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        self._change_in_flight(deployment, -1)
        d = self._deployments.get(deployment)
        if d is not None and d.per_token is not None and (prompt_tokens or completion_tokens):
            cost = d.per_token.of(prompt_tokens, completion_tokens)
            self._metrics.infra_cost.labels(*_labels(d), d.currency).inc(float(cost))

    def _change_in_flight(self, name: str, change: int) -> None:
        with self._lock:
            self._accrue_busy(name, self._clock())  # at the old level, up to now
            self._in_flight[name] = max(0, self._in_flight.get(name, 0) + change)
            if not self._at_collect:
                self._write_deployment(name)

    def _accrue_busy(self, name: str, now: float) -> None:
        """Busy time of deployment ``name``'s replicas since its last change (the caller holds the lock)."""
        last = self._busy_since.get(name, self._last)
        self._busy_since[name] = now
        d = self._deployments.get(name)
        if d is None:
            return
        busy = min(self._in_flight.get(name, 0), d.replicas)
        if busy and now > last:
            self._busy_unwritten[name] = self._busy_unwritten.get(name, 0.0) + (now - last) * busy

    def _write_deployment(self, name: str) -> None:
        """Deployment ``name``'s requests in flight and busy time into the metrics (the caller holds the
        lock)."""
        d = self._deployments.get(name)
        if d is None:
            return
        labels = _labels(d)
        self._metrics.in_flight.labels(*labels).set(self._in_flight.get(name, 0))
        busy = self._busy_unwritten.pop(name, 0.0)
        if busy:
            self._metrics.busy_seconds.labels(*labels).inc(busy)

    def _write_live(self) -> None:
        """Every deployment's and model's live counts into the metrics (before the registry is read)."""
        with self._lock:
            for name in list(self._in_flight) + list(self._busy_unwritten):
                self._write_deployment(name)
            for model, waiting in list(self._waiting.items()):
                self._metrics.queued.labels(model).set(waiting)

    def waiting(self, model: str, change: int) -> None:
        """A request starts (+1) or stops (-1) waiting for its first token."""
        if self._at_collect:
            self._waiting[model] = self._waiting.get(model, 0) + change  # on the event loop alone
        else:
            self._metrics.queued.labels(model).inc(change)

    def tick(self) -> None:
        """Accrue replica time, busy time and cost since the last tick."""
        healthy = self._healthy()
        accounts = self._accounts()
        with self._lock:
            now = self._clock()
            elapsed, self._last = now - self._last, now
            for d in self._deployments.values():
                labels = _labels(d)
                if d.name in healthy:
                    self._metrics.replicas_healthy.labels(*labels).set(healthy[d.name])
                self._accrue_busy(d.name, now)
                if not self._at_collect:
                    self._write_deployment(d.name)
                if elapsed <= 0 or not accounts:
                    continue
                running = healthy.get(d.name, 0) if d.autoscaled else d.replicas
                self._metrics.replica_seconds.labels(*labels).inc(elapsed * running)
                cost = float(d.replica_hour_cost) * running * elapsed / 3600
                self._metrics.infra_cost.labels(*labels, d.currency).inc(cost)


def _labels(d: DeploymentCost) -> tuple[str, str, str, str]:
    return (d.model, d.name, d.chip, d.pool)
