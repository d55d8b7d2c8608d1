"""The pools report: load now, and over a window tokens, revenue and the two costs, by pool and deployment,
on a hand-computed case."""

from __future__ import annotations

import pytest

from gateway.billing.ledger.records import UsageRow
from gateway.catalog.schema import parse_catalog
from gateway.cli.pools import format_pools
from gateway.observability.pools_report import pools_report

CATALOG = {
    "pools": [
        {
            "name": "own",
            "kind": "owned",
            "chips": {
                "nvidia": {
                    "purchase_price": "43800",  # 1.00 per hour over 5 years
                    "power_and_hosting_per_hour": "0.5",
                    "power_per_hour": "0.3",
                }
            },
        },
        {
            "name": "api",
            "kind": "managed",
            "per_token": {"input_per_million": "1", "output_per_million": "2"},
        },
    ],
    "models": [
        {
            "name": "m",
            "family": "llama",
            "context_length": 2048,
            "weights": {"kind": "local", "path": "/nonexistent"},
            "deployments": [
                {
                    "chip": "nvidia",
                    "chips_per_replica": 2,
                    "pool": "own",
                    "replicas": 2,
                    "max_ongoing_requests": 4,
                },
                {
                    "backend": "openai_upstream",
                    "pool": "api",
                    "max_ongoing_requests": 10,
                    "engine": {"base_url": "http://127.0.0.1:9/v1", "model": "x"},
                },
            ],
        }
    ],
}


def test_costs_revenue_and_load_per_pool_and_deployment() -> None:
    catalog = parse_catalog(CATALOG, "test")
    usage = [
        UsageRow(
            {"deployment": "m"},
            requests=3,
            prompt_tokens=3_000_000,
            completion_tokens=1_000_000,
            charge_nanos=5_000_000_000,
            currency="USD",
        ),
        UsageRow(
            {"deployment": "m@api"},
            requests=1,
            prompt_tokens=1_000_000,
            completion_tokens=1_000_000,
            charge_nanos=2_500_000_000,
            currency="USD",
        ),
    ]
    report = pools_report(
        catalog, usage, {"m": 6, "m@api": 1}, {"m": 2}, 3600.0, {"m": {"spill": 2, "drain_back": 1}}
    )
    own, api = (next(p for p in report["pools"] if p["pool"] == name) for name in ("own", "api"))
    # own: 2 replicas x 2 chips for an hour; marginal 0.3 (power), amortised 1.00 + 0.5 per chip-hour
    assert own["cost_marginal"] == pytest.approx(1.2) and own["cost_amortised"] == pytest.approx(6.0)
    assert own["revenue"] == pytest.approx(5.0) and own["margin_amortised"] == pytest.approx(-1.0)
    assert (own["capacity"], own["in_flight"], own["utilization"], own["vacancy"]) == (8, 6, 0.75, 0.25)
    # api: 1M in at 1, 1M out at 2, whatever the window
    assert api["cost_marginal"] == api["cost_amortised"] == pytest.approx(3.0)
    assert api["margin_marginal"] == pytest.approx(-0.5) and api["billing"] == "per_token"
    assert report["own_token_share"] == pytest.approx(4 / 6, abs=1e-4)
    deployments = {d["deployment"]: d for d in report["deployments"]}
    assert deployments["m"]["healthy_replicas"] == 2 and deployments["m@api"]["pool"] == "api"
    text = format_pools(report)
    assert "66.7% of the tokens" in text and "m: 2 spill(s), 1 drain-back(s)" in text
