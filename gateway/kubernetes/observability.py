"""Prometheus scraping and the Grafana dashboards, as ConfigMaps.

Pods that export metrics carry the usual ``prometheus.io/*`` annotations (the gateway's ``/metrics``, Ray's
metrics port on every Ray pod). For a Prometheus that does not honour them by default, the scrape job that
does is rendered too, for the operator to add to their Prometheus config. The dashboards are ConfigMaps
labelled ``grafana_dashboard``, the label Grafana's dashboard sidecar (kube-prometheus-stack, the Grafana
Helm chart) loads them by.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from gateway.kubernetes.common import Manifest, metadata
from gateway.kubernetes.options import RenderOptions


def scrape_job(options: RenderOptions) -> dict[str, Any]:
    """A Prometheus scrape job for this installation's annotated pods (``kubernetes_sd_configs``)."""
    annotation = "__meta_kubernetes_pod_annotation_prometheus_io_"
    return {
        "job_name": options.name,
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [options.namespace]}}],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"],
                "regex": options.name,
                "action": "keep",
            },
            {"source_labels": [annotation + "scrape"], "regex": "true", "action": "keep"},
            {
                "source_labels": [annotation + "path"],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
                "action": "replace",
            },
            {
                "source_labels": ["__address__", annotation + "port"],
                "regex": "([^:]+)(?::\\d+)?;(\\d+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
                "action": "replace",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
                "target_label": "component",
                "action": "replace",
            },
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod", "action": "replace"},
        ],
    }


def prometheus_config_map(options: RenderOptions) -> Manifest:
    text = yaml.safe_dump({"scrape_configs": [scrape_job(options)]}, sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(options, f"{options.name}-prometheus-scrape", "monitoring"),
        "data": {"scrape-configs.yaml": text},
    }


def dashboards_config_map(options: RenderOptions, dashboards: Mapping[str, str]) -> Manifest:
    """``dashboards``: file name -> Grafana dashboard JSON (``deploy/grafana/dashboards``)."""
    meta = metadata(options, f"{options.name}-grafana-dashboards", "monitoring")
    meta["labels"]["grafana_dashboard"] = "1"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": dict(sorted(dashboards.items())),
    }
