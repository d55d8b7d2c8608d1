"""The gateway on Kubernetes: its Deployment, Service and autoscaler, the catalog, the external stores.

The gateway pod joins the Ray cluster as a node of its own before ``maas serve --ray-address`` deploys the
catalog: a Ray driver connects through a raylet on its own host. That node declares no CPUs, GPUs or pool,
so no replica is ever placed on it. Replicas stream back to the gateway's pod address (replica channels).

Two kinds of gateway pod behind one Service: one that deploys the catalog (a Deployment of one, replaced
with ``Recreate``: two deployers at once would fight over the models), and the attached ones (a
StatefulSet, each pod with its own home volume for the ledger's spool), which serve what it deployed
(``maas serve --attach``) and which the HorizontalPodAutoscaler sizes. Either kind stopping takes no replica
with it while another gateway runs.
"""

from __future__ import annotations

import hashlib
from typing import Any

from gateway.kubernetes.common import (
    MODELS_ENV,
    Manifest,
    env_list,
    gib,
    labels,
    metadata,
    models_mount,
    models_volume,
    selector,
)
from gateway.kubernetes.options import RenderOptions

PORT = 8000
CATALOG_DIR = "/etc/maas"
CATALOG_FILE = "models.yaml"
HOME = "/var/lib/maas"
SHUTDOWN_GRACE_S = 25
"""``maas serve --shutdown-grace``: requests in flight finish; then the models are removed (up to 60 s)."""

JOIN_AND_SERVE = """\
set -e
ray start --address="$RAY_HEAD" --num-cpus=0 --num-gpus=0 --disable-usage-stats
exec maas serve {role} --host 0.0.0.0 --port {port} --ray-address "$RAY_HEAD" \\
    --shutdown-grace {grace}
"""
"""The gateway container's script: join the cluster as a node that takes no replica, then serve."""
DEPLOYING, ATTACHED = "deploying", "attached"
ROLE_LABEL = "maas/gateway-role"


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _probe(period_s: int, failures: int, timeout_s: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": period_s,
        "failureThreshold": failures,
        "timeoutSeconds": timeout_s,
    }


def _gateway_container(options: RenderOptions, role: str) -> dict[str, Any]:
    env = [
        {"name": "RAY_HEAD", "value": f"{options.head_service}:6379"},
        {"name": "MAAS_HOME", "value": HOME},
        *env_list(MODELS_ENV),
        _secret_env("MAAS_DATABASE_URL", options.database_secret, "url"),
    ]
    if options.redis_secret is not None:
        env.append(_secret_env("MAAS_REDIS_URL", options.redis_secret, "url"))
    env += [
        {"name": "RAY_AUTH_MODE", "value": "token"},
        _secret_env("RAY_AUTH_TOKEN", options.ray_auth_secret, "auth_token"),
    ]
    size = {"cpu": str(options.gateway_cpus), "memory": gib(options.gateway_memory_gib)}
    serve = f"--config {CATALOG_DIR}/{CATALOG_FILE}" if role == DEPLOYING else "--attach"
    script = JOIN_AND_SERVE.format(role=serve, port=PORT, grace=SHUTDOWN_GRACE_S)
    return {
        "name": "gateway",
        "image": options.images["cpu"],
        "command": ["/bin/sh", "-c", script],
        "env": env,
        "ports": [{"name": "http", "containerPort": PORT}],
        # Start-up loads every model first (a 690 GB checkpoint takes long): up to an hour before /health.
        "startupProbe": _probe(period_s=15, failures=240, timeout_s=5),
        # 503 (a model down, or draining): out of the Service at once...
        "readinessProbe": _probe(period_s=5, failures=2, timeout_s=3),
        # ...and restarted after five minutes of it: a gateway whose cluster lost its replicas (a restarted
        # head) gets them back only by deploying the catalog again.
        "livenessProbe": _probe(period_s=30, failures=10, timeout_s=5),
        "resources": {"limits": size, "requests": dict(size)},
        "volumeMounts": [
            *([{"name": "catalog", "mountPath": CATALOG_DIR, "readOnly": True}] if role == DEPLOYING else []),
            {"name": "home", "mountPath": HOME},
            models_mount(read_only=False),
        ],
    }


def _pod_template(options: RenderOptions, role: str, annotations: dict[str, str]) -> dict[str, Any]:
    volumes = [models_volume(options, read_only=False)]
    if role == DEPLOYING:
        volumes += [
            {"name": "catalog", "configMap": {"name": f"{options.name}-catalog"}},
            # The ledger's spool while PostgreSQL is down: it must outlive the pod.
            {"name": "home", "persistentVolumeClaim": {"claimName": f"{options.name}-gateway-home"}},
        ]
    return {
        "metadata": {
            "labels": {**labels(options, "gateway"), ROLE_LABEL: role},
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(PORT),
                "prometheus.io/path": "/metrics",
                **annotations,
            },
        },
        "spec": {
            "terminationGracePeriodSeconds": SHUTDOWN_GRACE_S + 60 + 15,
            "containers": [_gateway_container(options, role)],
            "volumes": volumes,
        },
    }


def _role_selector(options: RenderOptions, role: str) -> dict[str, Any]:
    return {"matchLabels": {**selector(options, "gateway"), ROLE_LABEL: role}}


def gateway_deployment(options: RenderOptions, catalog_text: str) -> Manifest:
    """The gateway that deploys the catalog: one, replaced with ``Recreate``."""
    digest = hashlib.sha256(catalog_text.encode()).hexdigest()[:16]
    # A changed catalog restarts the deploying gateway (`maas catalog apply` changes it live); the attached
    # ones follow what it deploys.
    template = _pod_template(options, DEPLOYING, {"maas/catalog-sha256": digest})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(options, f"{options.name}-gateway", "gateway"),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": _role_selector(options, DEPLOYING),
            "template": template,
        },
    }


def attached_gateways(options: RenderOptions) -> list[Manifest]:
    """The attached gateways: a StatefulSet (each pod keeps its own home volume, the ledger's spool while
    PostgreSQL is down) and the headless Service it requires."""
    name = f"{options.name}-gateway-attached"
    home_claim = {
        "metadata": {"name": "home"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(options, name, "gateway"),
            "spec": {
                "clusterIP": "None",
                "selector": {**selector(options, "gateway"), ROLE_LABEL: ATTACHED},
                "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": metadata(options, name, "gateway"),
            "spec": {
                # No `replicas`: the autoscaler owns the count (a re-applied StatefulSet would reset it).
                "serviceName": name,
                "podManagementPolicy": "Parallel",
                "selector": _role_selector(options, ATTACHED),
                "template": _pod_template(options, ATTACHED, {}),
                "volumeClaimTemplates": [home_claim],
            },
        },
    ]


def gateway_service(options: RenderOptions) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(options, f"{options.name}-gateway", "gateway"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(options, "gateway"),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def gateway_autoscaler(options: RenderOptions) -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(options, f"{options.name}-gateway-attached", "gateway"),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": f"{options.name}-gateway-attached",
            },
            "minReplicas": options.gateway_replicas,
            "maxReplicas": options.gateway_max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
    }


def catalog_config_map(options: RenderOptions, catalog_text: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(options, f"{options.name}-catalog", "gateway"),
        "data": {CATALOG_FILE: catalog_text},
    }


def external_stores(options: RenderOptions) -> list[Manifest]:
    """ExternalName Services for PostgreSQL and Redis: a stable in-cluster name for each, which the URLs in
    the Secrets can use (``postgresql://...@<name>-postgres:5432/maas``)."""
    stores = []
    for store, host in (("postgres", options.postgres_host), ("redis", options.redis_host)):
        if host is not None:
            stores.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": metadata(options, f"{options.name}-{store}", store),
                    "spec": {"type": "ExternalName", "externalName": host},
                }
            )
    return stores


def namespace(options: RenderOptions) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": options.namespace, "labels": labels(options, "namespace")},
    }
