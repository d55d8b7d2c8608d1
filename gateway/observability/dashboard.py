"""What the built-in operator dashboard shows, computed from the ledger and the gateway's own metrics.

Token and revenue series and top tenants come from the ledger (so they match the usage API); cost,
margin and utilisation since the gateway started come from the metrics, revenue and cost alike, so both
sides of a margin cover the same time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.billing.ledger import Ledger, UsageQuery

# The page and its scripts (package data: see pyproject.toml).
STATIC_DIR = Path(__file__).resolve().parent / "static"
SERIES_WINDOW_S = 6 * 3600
TOP_TENANTS = 10


def metric_totals(registry: CollectorRegistry, name: str, by: str) -> dict[str, float]:
    """Sum a metric's samples by one label."""
    totals: dict[str, float] = defaultdict(float)
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name:
                totals[sample.labels.get(by, "")] += sample.value
    return dict(totals)


def _ratio(
    numerator: dict[str, float], denominator: dict[str, float], scale: float = 1.0
) -> dict[str, float]:
    return {k: numerator.get(k, 0.0) / v * scale for k, v in denominator.items() if v > 0}


async def dashboard_data(
    ledger: Ledger, registry: CollectorRegistry, now: float | None = None
) -> dict[str, Any]:
    now = time.time() if now is None else now
    since = now - SERIES_WINDOW_S
    series = await ledger.query(UsageQuery(since=since, group_by=("minute",)))
    tenants = await ledger.query(UsageQuery(since=since, group_by=("tenant",)))
    tenants.sort(key=lambda r: (r.charge_nanos, r.prompt_tokens + r.completion_tokens), reverse=True)
    # Embeddings and rerank bill prompt tokens only: per model and endpoint they show beside chat.
    by_model = await ledger.query(UsageQuery(since=since, group_by=("model", "endpoint")))

    tokens_by_chip = metric_totals(registry, "maas_tokens_total", "chip")
    cost_by_chip = metric_totals(registry, "maas_infra_cost_total", "chip")
    revenue_by_pool = metric_totals(registry, "maas_revenue_total", "pool")
    cost_by_pool = metric_totals(registry, "maas_infra_cost_total", "pool")
    pools = sorted(set(revenue_by_pool) | set(cost_by_pool))
    busy = metric_totals(registry, "maas_replica_busy_seconds_total", "pool")
    replica_time = metric_totals(registry, "maas_replica_seconds_total", "pool")
    tokens_by_pool = metric_totals(registry, "maas_tokens_total", "pool")
    total_tokens = sum(tokens_by_pool.values())
    return {
        "generated_at": now,
        "window_s": SERIES_WINDOW_S,
        "series": [
            {
                "minute": r.group["minute"],
                "tokens": r.prompt_tokens + r.completion_tokens,
                "revenue": r.cost,
                "requests": r.requests,
            }
            for r in series
        ],
        "top_tenants": [
            {
                "tenant": r.group["tenant"],
                "requests": r.requests,
                "tokens": r.prompt_tokens + r.completion_tokens,
                "revenue": r.cost,
                "currency": r.currency,
            }
            for r in tenants[:TOP_TENANTS]
        ],
        "tokens_by_model": [
            {
                "model": r.group["model"],
                "endpoint": r.group["endpoint"],
                "requests": r.requests,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "revenue": r.cost,
                "currency": r.currency,
            }
            for r in by_model
        ],
        "cost_per_million_tokens_by_chip": _ratio(cost_by_chip, tokens_by_chip, 1e6),
        "margin_by_pool": {
            p: {
                "revenue": revenue_by_pool.get(p, 0.0),
                "cost": cost_by_pool.get(p, 0.0),
                "margin": revenue_by_pool.get(p, 0.0) - cost_by_pool.get(p, 0.0),
            }
            for p in pools
        },
        # Several gateways each count the busy time of their own requests: where theirs overlap on one
        # replica the sum exceeds its time, so the share is capped at whole.
        "utilization_by_pool": {k: min(1.0, v) for k, v in _ratio(busy, replica_time).items()},
        "token_share_by_pool": _ratio(tokens_by_pool, {p: total_tokens for p in tokens_by_pool}),
        "placement_events": metric_totals(registry, "maas_placement_spills_total", "event"),
        "live": {
            "requests_total": sum(metric_totals(registry, "maas_requests_total", "model").values()),
            "latency_sum_s": sum(
                metric_totals(registry, "maas_request_duration_seconds_sum", "model").values()
            ),
            "latency_count": sum(
                metric_totals(registry, "maas_request_duration_seconds_count", "model").values()
            ),
            "in_flight": sum(metric_totals(registry, "maas_requests_in_flight", "model").values()),
        },
    }
