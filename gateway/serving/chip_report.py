"""Which models run on which chips, how many replicas are healthy, and what chips the cluster has free."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.catalog.schema import Catalog


def chip_report(
    catalog: Catalog,
    statuses: Mapping[str, str],
    healthy: Mapping[str, int],
    cluster: Mapping[str, Mapping[str, float]],
    channels: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The body of ``GET /admin/chips`` (and what ``maas chips`` prints): a row per deployment;
    ``statuses``, ``healthy`` and ``channels`` are by deployment name."""
    kinds = catalog.chip_kinds()
    models = []
    for model in catalog.models:
        for name, deployment in zip(model.deployment_names(), model.deployments, strict=True):
            kind = kinds[deployment.chip]
            models.append(
                {
                    "model": model.name,
                    "deployment": name,
                    "backend": deployment.backend,
                    "chip": deployment.chip,
                    "ray_resource": kind.ray_resource,
                    "chips_per_replica": deployment.chips_per_replica,
                    "pool": deployment.pool,
                    "replicas": deployment.replicas,
                    "healthy_replicas": int(healthy.get(name, 0)),
                    # replicas streaming to this gateway over their own channel (the rest: Serve's handle)
                    "replica_channels": int((channels or {}).get(name, 0)),
                    "status": statuses.get(name, "UNKNOWN"),
                }
            )
    return {
        "object": "chips",
        "models": models,
        "cluster": {name: dict(amounts) for name, amounts in cluster.items()},
        "kinds": [
            {
                "chip": kind.name,
                "ray_resource": kind.ray_resource,
                "visible_devices_env": kind.visible_devices_env,
                "torch_device": kind.torch_device,
                "description": kind.description,
                "in_cluster": kind.ray_resource is None or kind.ray_resource in cluster,
            }
            for kind in kinds.values()
        ],
    }
