"""Pieces every manifest shares: labels and metadata, resource sizes, the models volume."""

from __future__ import annotations

from typing import Any

from gateway.kubernetes.options import RenderOptions

Manifest = dict[str, Any]
"""One Kubernetes object as plain data, in the order its YAML is written."""

MODELS_PATH = "/models"
"""Where the models volume is mounted in every pod: the Hugging Face cache and the prepared models."""
MODELS_ENV = {
    "HF_HOME": f"{MODELS_PATH}/huggingface",
    "MAAS_MODELS_DIR": f"{MODELS_PATH}/maas",
    "HF_HUB_OFFLINE": "1",
}
"""Paths the gateway and the replicas agree on: a model prepared by the gateway is loaded by its replicas
from the same path, on another node, through the shared volume."""


def labels(options: RenderOptions, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "maas",
        "app.kubernetes.io/instance": options.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "maas-deploy-render",
    }


def selector(options: RenderOptions, component: str) -> dict[str, str]:
    """The labels that pick one component's pods (a subset of ``labels``, stable across renders)."""
    return {"app.kubernetes.io/instance": options.name, "app.kubernetes.io/component": component}


def metadata(options: RenderOptions, name: str, component: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": options.namespace, "labels": labels(options, component), **extra}


def gib(amount: int) -> str:
    return f"{amount}Gi"


def env_list(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": name, "value": value} for name, value in values.items()]


def models_volume(options: RenderOptions, *, read_only: bool) -> dict[str, Any]:
    claim: dict[str, Any] = {"claimName": options.models_claim}
    if read_only:
        claim["readOnly"] = True
    return {"name": "models", "persistentVolumeClaim": claim}


def models_mount(*, read_only: bool) -> dict[str, Any]:
    mount: dict[str, Any] = {"name": "models", "mountPath": MODELS_PATH}
    if read_only:
        mount["readOnly"] = True
    return mount
