"""The Grafana dashboard and Prometheus config only name metrics the gateway really exports."""

from __future__ import annotations

import json
import re

import yaml

from gateway.observability.metrics import GatewayMetrics
from tests.conftest import REPO

SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def exported_names() -> set[str]:
    names = set()
    for family in GatewayMetrics().registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES)
    return names


def test_every_panel_query_names_an_exported_metric() -> None:
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/maas-token-cost.json").read_text())
    exported = exported_names()
    assert dashboard["panels"], "no panels"
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\bmaas_[a-z_]+", target["expr"]))
            assert used, (panel["title"], target["expr"])
            assert used <= exported, (panel["title"], used - exported)
            assert target["datasource"]["uid"] == "maas-prometheus"


def test_dashboard_covers_what_operators_decide_by() -> None:
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/maas-token-cost.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "maas_tokens_total",
        "maas_revenue_total",
        "maas_infra_cost_total",
        "maas_replica_busy_seconds_total",
        "maas_placement_spills_total",  # pools: spill and drain back
        "maas_pool_info",  # rented spend
    ):
        assert metric in exprs


def test_provisioning_points_at_the_dashboard_and_prometheus_scrapes_the_gateway() -> None:
    datasource = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "maas-prometheus"
    provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/maas.yml").read_text())
    assert provider["providers"][0]["options"]["path"].endswith("deploy/grafana/dashboards")
    scrape = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["metrics_path"] == "/metrics"
