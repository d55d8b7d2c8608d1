"""Offline validation of rendered manifests: Kubernetes' JSON schemas and KubeRay's RayCluster CRD schema.

- Built-in kinds: the strict schemas of the ``kubernetes-validate`` package (unknown fields fail, as with
  ``kubectl apply --validate=strict``), for the oldest and the newest Kubernetes release checked here.
- ``RayCluster``: the ``openAPIV3Schema`` of KubeRay's CRD (vendored beside this file, see its NOTICE),
  made strict the same way: every object schema that lists its properties and neither allows others nor
  preserves unknown fields refuses unknown ones. The API server would prune them silently; here they fail.
  Its pod templates are also checked against Kubernetes' own strict ``PodTemplate`` schema, and the rules
  KubeRay's webhook-free validation applies (``ray-operator/controllers/ray/utils/validation.go``, v1.7.0)
  that a schema cannot express are checked by hand.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

K8S_VERSIONS = ("1.30", "1.35")
"""The oldest and the newest Kubernetes releases the manifests are checked against."""
CRD_SCHEMA = Path(__file__).parent / "schemas" / "ray.io_rayclusters.v1.json"
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` wherever properties are listed and nothing else is
    said about unknown fields."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@functools.cache
def ray_cluster_validator() -> jsonschema.Draft7Validator:
    schema = strict(json.loads(CRD_SCHEMA.read_text()))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def errors_of(manifest: dict[str, Any]) -> list[str]:
    """Every reason ``manifest`` would be refused; empty when it validates."""
    if manifest["kind"] == "RayCluster":
        return _ray_cluster_errors(manifest)
    return _builtin_errors(manifest)


def _builtin_errors(manifest: dict[str, Any]) -> list[str]:
    errors = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(copy.deepcopy(manifest), version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            errors.append(f"{manifest['kind']} (Kubernetes {version}) at {path}: {exc.message}")
    return errors


def _ray_cluster_errors(cluster: dict[str, Any]) -> list[str]:
    errors = [
        f"RayCluster at {'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in ray_cluster_validator().iter_errors(cluster)
    ]
    spec = cluster["spec"]
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    for name, group in groups:
        # The pod templates (and the object's metadata) as Kubernetes' own PodTemplate object.
        as_pod_template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": cluster["metadata"],
            "template": group["template"],
        }
        errors += [f"group {name}: {e}" for e in _builtin_errors(as_pod_template)]
        errors += _kuberay_group_rules(name, group, autoscaling=spec.get("enableInTreeAutoscaling", False))
    names = [g["groupName"] for g in spec["workerGroupSpecs"]]
    if len(set(names)) != len(names):
        errors.append(f"worker group names repeat: {names}")
    return errors


def _kuberay_group_rules(name: str, group: dict[str, Any], *, autoscaling: bool) -> list[str]:
    errors = []
    params = group.get("rayStartParams", {})
    resource_params = ("num-cpus", "num-gpus", "memory", "resources")
    if group.get("resources") and any(params.get(p) for p in resource_params):
        errors.append(f"group {name}: resources set both in rayStartParams and resources")
    if "labels" in params:
        errors.append(f"group {name}: rayStartParams['labels'] is not supported")
    if name == "head":
        return errors
    if not DNS_1123_LABEL.match(name):
        errors.append(f"worker group {name!r} is not a DNS-1123 label")
    low, high, replicas = group.get("minReplicas"), group.get("maxReplicas"), group.get("replicas")
    if not autoscaling and (low is None or high is None):
        errors.append(f"worker group {name} must set minReplicas and maxReplicas (autoscaling is off)")
    elif low is not None and high is not None and not (0 <= low <= (replicas or 0) <= high):
        errors.append(f"worker group {name}: replicas {replicas} outside [{low}, {high}]")
    return errors
