"""What each capacity pool and deployment is doing and earning: the body of ``GET /admin/pools``.

Load is now (capacity, in flight, utilisation and vacancy); money is over a window (since ``since``, the
gateway's start by default): revenue from the ledger's charges, and two costs kept apart:

- **marginal**: what serving added. Owned chips: their power (they are paid for whether they serve or
  idle); rented chip-hours: the fee; a rented API: its price per token.
- **amortised**: what the books report. Owned chips: depreciation plus power and hosting; the rest as
  marginal.

Chip-hour costs run for every replica asked for, over the window (an autoscaled deployment: for the replicas
running now); API costs follow the tokens sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gateway.billing.ledger.records import NANOS, UsageRow
from gateway.catalog.pools import Pool
from gateway.catalog.schema import Catalog


@dataclass
class _Figures:
    """Load and money of a deployment, or of a pool (its deployments summed)."""

    capacity: int = 0
    in_flight: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    revenue: Decimal = Decimal(0)
    marginal_cost: Decimal = Decimal(0)
    amortised_cost: Decimal = Decimal(0)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, other: _Figures) -> None:
        self.capacity += other.capacity
        self.in_flight += other.in_flight
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.revenue += other.revenue
        self.marginal_cost += other.marginal_cost
        self.amortised_cost += other.amortised_cost

    def body(self) -> dict[str, Any]:
        utilization = self.in_flight / self.capacity if self.capacity else 0.0
        return {
            **self.extra,
            "capacity": self.capacity,
            "in_flight": self.in_flight,
            "utilization": round(utilization, 4),
            "vacancy": round(max(0.0, 1 - utilization), 4),
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "revenue": float(self.revenue),
            "cost_marginal": float(self.marginal_cost),
            "cost_amortised": float(self.amortised_cost),
            "margin_marginal": float(self.revenue - self.marginal_cost),
            "margin_amortised": float(self.revenue - self.amortised_cost),
        }


def _replica_hour_costs(pool: Pool | None, chip: str, chips_per_replica: float) -> tuple[Decimal, Decimal]:
    """(marginal, amortised) cost of one replica-hour in ``pool``; an API pool's are per token."""
    if pool is None or pool.per_token is not None:
        return Decimal(0), Decimal(0)
    return (
        pool.replica_hour_cost(chip, chips_per_replica, marginal=True),
        pool.replica_hour_cost(chip, chips_per_replica),
    )


def pools_report(
    catalog: Catalog,
    usage: Sequence[UsageRow],
    in_flight: Mapping[str, int],
    healthy: Mapping[str, int],
    window_s: float,
    placement_events: Mapping[str, Mapping[str, int]],
) -> dict[str, Any]:
    """``usage``: the ledger grouped by deployment over the window; ``in_flight`` and ``healthy`` by
    deployment; ``placement_events``: spill and drain-back counts by model."""
    by_deployment = {row.group.get("deployment", ""): row for row in usage}
    hours = Decimal(str(max(window_s, 0.0))) / 3600
    pools: dict[str, _Figures] = {}
    deployments = []
    for model in catalog.models:
        for name, d in zip(model.deployment_names(), model.deployments, strict=True):
            pool = catalog.pool(d.pool)
            figures = _Figures(capacity=d.capacity, in_flight=int(in_flight.get(name, 0)))
            row = by_deployment.get(name)
            if row is not None:
                figures.requests = row.requests
                figures.prompt_tokens, figures.completion_tokens = row.prompt_tokens, row.completion_tokens
                figures.revenue = Decimal(row.charge_nanos) / NANOS
            marginal, amortised = _replica_hour_costs(pool, d.chip, d.chips_per_replica)
            # autoscaled: the replicas running now stand for the window (Prometheus has the exact time)
            running = int(healthy.get(name, 0)) if d.autoscaling is not None else d.replicas
            figures.marginal_cost = marginal * running * hours
            figures.amortised_cost = amortised * running * hours
            if pool is not None and pool.per_token is not None:
                price = pool.token_cost(d.chip, d.chips_per_replica, None, marginal=True)
                assert price is not None  # a per-token pool always has its price
                sent = price.of(figures.prompt_tokens, figures.completion_tokens)
                figures.marginal_cost = figures.amortised_cost = sent
            figures.extra = {
                "model": model.name,
                "deployment": name,
                "pool": d.pool,
                "chip": d.chip,
                "backend": d.backend,
                "replicas": d.max_replicas,
                "healthy_replicas": int(healthy.get(name, 0)),
            }
            pools.setdefault(d.pool, _Figures()).add(figures)
            deployments.append(figures.body())
    tokens = {name: f.prompt_tokens + f.completion_tokens for name, f in pools.items()}
    total = sum(tokens.values())
    owned = {p.name for p in catalog.pools if p.kind == "owned"} or set(pools)
    pool_bodies = []
    for name, figures in sorted(pools.items()):
        pool = catalog.pool(name)
        figures.extra = {
            "pool": name,
            "kind": pool.kind if pool is not None else "owned",
            "billing": _billing(pool),
            "currency": pool.currency if pool is not None else "USD",
            "token_share": round(tokens[name] / total, 4) if total else 0.0,
        }
        pool_bodies.append(figures.body())
    own_tokens = sum(t for name, t in tokens.items() if name in owned)
    return {
        "object": "pools",
        "window_s": round(window_s, 1),
        "own_token_share": round(own_tokens / total, 4) if total else None,
        "pools": pool_bodies,
        "deployments": deployments,
        "placement_events": {m: dict(events) for m, events in sorted(placement_events.items())},
    }


def _billing(pool: Pool | None) -> str:
    if pool is None or pool.kind == "owned":
        return "owned"
    return "per_token" if pool.per_token is not None else "chip_hour"
