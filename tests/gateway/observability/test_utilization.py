"""Cost, replica time and busy time: a hand-computed case from the catalog's pool costs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from gateway.catalog.pools import Pool
from gateway.catalog.schema import parse_catalog
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.utilization import UtilizationMeter, deployment_costs

CATALOG = {
    "pools": [
        {
            "name": "own",
            "kind": "owned",
            "chips": {
                "nvidia": {
                    "purchase_price": "43800",
                    "depreciation_years": 5,
                    "power_and_hosting_per_hour": "0.5",
                }
            },
        },
        {"name": "rented", "kind": "managed", "chips": {"ascend": {"hourly_fee": "2.40"}}},
    ],
    "models": [
        {
            "name": "a",
            "family": "llama",
            "context_length": 2048,
            "weights": {"kind": "local", "path": "/m/a"},
            "deployments": [{"chip": "nvidia", "chips_per_replica": 2, "pool": "own", "replicas": 3}],
        },
        {
            "name": "b",
            "family": "qwen",
            "context_length": 2048,
            "weights": {"kind": "local", "path": "/m/b"},
            "deployments": [{"chip": "ascend", "chips_per_replica": 1, "pool": "rented", "replicas": 1}],
        },
    ],
}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    result = registry.get_sample_value(name, labels)
    assert result is not None, (name, labels)
    return result


def test_owned_chip_hour_is_depreciation_plus_power_and_managed_is_the_fee() -> None:
    catalog = parse_catalog(CATALOG, "test")
    own, rented = catalog.pools
    # 43800 over 5 years of 8760 hours is 1.00 per hour, plus 0.50 power and hosting.
    assert own.chip_hour_cost("nvidia") == Decimal("1.5")
    assert own.replica_hour_cost("nvidia", 2) == Decimal("3.0")
    assert rented.replica_hour_cost("ascend", 1) == Decimal("2.40")
    assert rented.chip_hour_cost("tpu") == 0


def test_replica_time_busy_time_and_cost_accrue_per_deployment() -> None:
    catalog = parse_catalog(CATALOG, "test")
    metrics = GatewayMetrics()
    clock = [0.0]
    meter = UtilizationMeter(
        metrics, deployment_costs(catalog), lambda: {"a": 3, "b": 0}, clock=lambda: clock[0]
    )
    meter.started("a")
    clock[0] = 1800.0  # half an hour with one request on model a
    meter.finished("a")
    clock[0] = 3600.0
    meter.tick()
    r = metrics.registry
    a = {"model": "a", "deployment": "a", "chip": "nvidia", "pool": "own"}
    b = {"model": "b", "deployment": "b", "chip": "ascend", "pool": "rented"}
    assert value(r, "maas_replica_seconds_total", **a) == 3 * 3600
    assert value(r, "maas_replica_busy_seconds_total", **a) == 1800  # one of three replicas, half the hour
    assert value(r, "maas_infra_cost_total", **a, currency="USD") == pytest.approx(3 * 3.0)
    assert value(r, "maas_infra_cost_total", **b, currency="USD") == pytest.approx(2.40)
    assert value(r, "maas_replicas", **a) == 3 and value(r, "maas_replicas_healthy", **a) == 3
    assert value(r, "maas_replicas_healthy", **b) == 0


def test_deployments_must_name_declared_pools() -> None:
    broken = {**CATALOG, "pools": [CATALOG["pools"][0]]}
    with pytest.raises(Exception, match="pool 'rented', which is not declared"):
        parse_catalog(broken, "test")


def test_pool_costs_must_fit_the_pool_kind() -> None:
    with pytest.raises(ValueError, match="needs hourly_fee"):
        Pool(name="x", kind="managed", chips={"nvidia": {"purchase_price": "1"}})  # type: ignore[dict-item]


def test_streamed_records_feed_time_per_output_token_and_errors_carry_their_type() -> None:
    import dataclasses

    from tests.gateway.billing.ledger.test_stores import record

    metrics = GatewayMetrics()
    metrics.observe(record("r1", ttft_s=0.5, duration_s=2.5, completion_tokens=5))
    metrics.observe(
        dataclasses.replace(record("r2"), status="error", error_type="BackendUnavailable", ttft_s=None)
    )
    r = metrics.registry
    assert value(r, "maas_time_per_output_token_seconds_count", model="m1") == 1
    assert value(r, "maas_time_per_output_token_seconds_sum", model="m1") == pytest.approx(0.5)
    labels = {"model": "m1", "tenant": "acme", "chip": "cpu", "pool": "own"}
    assert value(r, "maas_requests_total", **labels, status="error", error_type="BackendUnavailable") == 1
    assert value(r, "maas_requests_total", **labels, status="ok", error_type="") == 1


def test_requests_waiting_for_their_first_token_are_counted_as_queued() -> None:
    metrics = GatewayMetrics()
    meter = UtilizationMeter(metrics, [])
    meter.waiting("m", +1)
    meter.waiting("m", +1)
    meter.waiting("m", -1)
    assert value(metrics.registry, "maas_requests_queued", model="m") == 1


def test_a_rented_api_costs_its_token_prices_as_it_serves_and_no_replica_time() -> None:
    catalog = parse_catalog(
        {
            "pools": [
                {
                    "name": "api",
                    "kind": "managed",
                    "per_token": {"input_per_million": 1, "output_per_million": 4},
                }
            ],
            "models": [
                {
                    "name": "m",
                    "family": "llama",
                    "context_length": 512,
                    "weights": {"kind": "local", "path": "/x"},
                    "deployments": [
                        {
                            "backend": "openai_upstream",
                            "pool": "api",
                            "engine": {"base_url": "http://127.0.0.1:9/v1", "model": "x"},
                        }
                    ],
                }
            ],
        },
        "test",
    )
    metrics = GatewayMetrics()
    clock = [0.0]
    meter = UtilizationMeter(metrics, deployment_costs(catalog), clock=lambda: clock[0])
    meter.started("m")
    meter.finished("m", prompt_tokens=500_000, completion_tokens=250_000)
    clock[0] = 3600.0
    meter.tick()
    labels = {"model": "m", "deployment": "m", "chip": "cpu", "pool": "api"}
    assert value(metrics.registry, "maas_infra_cost_total", **labels, currency="USD") == pytest.approx(1.5)
    assert value(metrics.registry, "maas_pool_info", pool="api", kind="managed") == 1


def test_a_gateway_that_does_not_account_for_replicas_counts_only_its_own_requests() -> None:
    """Of several gateways in front of the same replicas one accrues replica time and chip-hour cost, so a
    sum over all of them counts each replica-second once; each still counts its requests' busy time."""
    catalog = parse_catalog(CATALOG, "test")
    accounting, other = GatewayMetrics(), GatewayMetrics()
    clock = [0.0]
    meters = [
        UtilizationMeter(
            m, deployment_costs(catalog), lambda: {"a": 3}, lambda: clock[0], accounts=lambda f=f: f
        )
        for m, f in ((accounting, True), (other, False))
    ]
    for meter in meters:
        meter.started("a")
    clock[0] = 3600.0
    for meter in meters:
        meter.tick()
    a = {"model": "a", "deployment": "a", "chip": "nvidia", "pool": "own"}
    assert value(accounting.registry, "maas_replica_seconds_total", **a) == 3 * 3600
    assert other.registry.get_sample_value("maas_replica_seconds_total", a) is None
    assert other.registry.get_sample_value("maas_infra_cost_total", {**a, "currency": "USD"}) is None
    assert value(other.registry, "maas_replica_busy_seconds_total", **a) == 3600


def test_settled_records_are_counted_once_however_often_the_metrics_are_read() -> None:
    from tests.gateway.billing.ledger.test_stores import record

    metrics = GatewayMetrics()
    labels = {"model": "m1", "tenant": "acme", "chip": "cpu", "pool": "own"}
    for i in range(3):
        metrics.observe(record(f"r{i}", completion_tokens=5))
    r = metrics.registry
    assert value(r, "maas_requests_total", **labels, status="ok", error_type="") == 3
    assert value(r, "maas_requests_total", **labels, status="ok", error_type="") == 3  # read again: still 3
    assert value(r, "maas_tokens_total", **labels, kind="completion") == 15
    metrics.observe(record("r3", completion_tokens=5))
    assert value(r, "maas_request_duration_seconds_count", model="m1", endpoint="chat.completions") == 4


def test_without_a_scrape_settled_records_are_counted_in_batches_not_kept() -> None:
    from gateway.observability.metrics import COUNT_EVERY
    from tests.gateway.billing.ledger.test_stores import record

    metrics = GatewayMetrics()
    for i in range(COUNT_EVERY + 1):
        metrics.observe(record(f"r{i}"))
    labels = ("m1", "acme", "cpu", "own", "ok", "")
    counted = metrics.requests.labels(*labels)._value.get()  # the child itself: no registry read
    assert counted == COUNT_EVERY
    assert (
        value(
            metrics.registry,
            "maas_requests_total",
            **dict(zip(("model", "tenant", "chip", "pool", "status", "error_type"), labels, strict=True)),
        )
        == COUNT_EVERY + 1
    )
