"""The KubeRay ``RayCluster``: a head that runs nothing but Ray's own services, and the worker groups.

A ``RayCluster`` rather than a ``RayService``: the gateway deploys the catalog's Serve applications itself
(``maas serve --ray-address``), applies catalog changes at run time (``maas catalog apply``) and keeps
Serve's HTTP proxy off, while a ``RayService`` owns the Serve config and would redeploy over the gateway's.

Replica counts are fixed (``minReplicas`` = ``replicas`` = ``maxReplicas``, KubeRay's autoscaler off): the
catalog already says how many replicas run where, and the gateway checks the cluster's chips against it.
Each worker declares the resources ``maas node resources --pool`` prints for such a node.
"""

from __future__ import annotations

import json
import shlex
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
)
from gateway.kubernetes.options import RAY_VERSION, RenderOptions
from gateway.kubernetes.worker_groups import WorkerGroup

RAY_METRICS_PORT = 8080
"""Ray's metrics export port as KubeRay sets it (Serve's replica and queue metrics)."""


def ray_start_params(group: WorkerGroup, cpus: int) -> dict[str, str]:
    """The ``ray start`` options of a worker of ``group``, as KubeRay's ``rayStartParams``."""
    params = {"num-cpus": str(cpus)}
    if group.num_gpus:
        params["num-gpus"] = str(group.num_gpus)
    params["resources"] = shlex.quote(json.dumps(group.ray_resources, sort_keys=True))
    return params


def _pod_template(
    options: RenderOptions,
    component: str,
    container: dict[str, Any],
    extra_labels: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "labels": {**labels(options, component), **(extra_labels or {})},
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(RAY_METRICS_PORT),
            },
        },
        "spec": {
            **(spec or {}),
            "containers": [container],
            "volumes": [
                models_volume(options, read_only=True),
                {"name": "shm", "emptyDir": {"medium": "Memory"}},  # Ray's object store and NCCL/HCCL
            ],
        },
    }


def _container(name: str, image: str, cpus: int, memory_gib: int, devices: dict[str, int]) -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": str(cpus), "memory": gib(memory_gib)}
    return {
        "name": name,
        "image": image,
        "env": env_list(MODELS_ENV),
        "resources": {"limits": {**requests, **devices}, "requests": dict(requests)},
        "volumeMounts": [models_mount(read_only=True), {"name": "shm", "mountPath": "/dev/shm"}],
    }


def head_group(options: RenderOptions) -> dict[str, Any]:
    container = _container(
        "ray-head", options.images["cpu"], options.head_cpus, options.head_memory_gib, devices={}
    )
    container["ports"] = [
        {"name": "gcs-server", "containerPort": 6379},
        {"name": "dashboard", "containerPort": 8265},
        {"name": "metrics", "containerPort": RAY_METRICS_PORT},
    ]
    return {
        # No replica lands on the head: it declares no CPUs and no pool.
        "rayStartParams": {"num-cpus": "0"},
        "template": _pod_template(options, "ray-head", container),
    }


def worker_group(options: RenderOptions, group: WorkerGroup) -> dict[str, Any]:
    if group.chip.ray_resource is None:
        cpus, memory = options.cpu_worker_cpus, options.cpu_worker_memory_gib
    else:
        chips = max(group.chips_per_pod, 1)
        cpus, memory = options.cpus_per_chip * chips, options.memory_gib_per_chip * chips
    devices = {group.device_resource: group.chips_per_pod} if group.device_resource else {}
    container = _container("ray-worker", group.image, cpus, memory, devices)
    spec: dict[str, Any] = {}
    if options.pool_node_label:
        spec["nodeSelector"] = {options.pool_node_label: group.pool}
    if group.device_resource:
        spec["tolerations"] = [{"key": group.device_resource, "operator": "Exists", "effect": "NoSchedule"}]
    pod_labels = {"maas/chip": group.chip.name, "maas/pool": group.pool}
    return {
        "groupName": group.name,
        "replicas": group.pods,
        "minReplicas": group.pods,
        "maxReplicas": group.pods,
        "rayStartParams": ray_start_params(group, cpus),
        "template": _pod_template(options, "ray-worker", container, pod_labels, spec),
    }


def ray_cluster(options: RenderOptions, groups: list[WorkerGroup]) -> Manifest:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": metadata(options, options.cluster_name, "ray"),
        "spec": {
            "rayVersion": RAY_VERSION,
            # Ray's ports take a token (the gateway's own rule): KubeRay hands it to every Ray pod from
            # this Secret, and the gateway reads it from the same one.
            "authOptions": {"mode": "token", "secretName": options.ray_auth_secret},
            "enableInTreeAutoscaling": False,
            "headGroupSpec": head_group(options),
            "workerGroupSpecs": [worker_group(options, group) for group in groups],
        },
    }
