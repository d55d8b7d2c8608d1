"""A deployment of a model as the runtime starts it (a ``Unit``): what its backend needs, Serve's options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import ModelSpec
from backends.chips import ChipKind, ray_actor_resources
from gateway.catalog.pools import Pool, pool_resource
from gateway.catalog.schema import Catalog, Deployment, ModelEntry
from gateway.serving.billing_autoscaling import policy_config
from gateway.serving.ray_env import REPLICA_ENV

POOL_SHARE = 0.001
"""What a replica asks of its pool's resource (a node declares one unit): a marker, never a limit."""


@dataclass(frozen=True)
class Unit:
    """One deployment of one model: what the runtime starts, a Serve application or an in-gateway client."""

    model: ModelEntry
    name: str
    """``ModelEntry.deployment_names``: the ledger's deployment and (prefixed) the Serve application."""
    deployment: Deployment
    spec: ModelSpec
    pool: Pool | None = None
    """Its pool's terms (None: the catalog declares no pools)."""

    def autoscaling_config(self) -> dict[str, Any]:
        """Serve's ``autoscaling_config`` (the deployment is autoscaled). On rented chip-hours, replicas go
        only at billing boundaries (``gateway.serving.billing_autoscaling``): that policy holds the
        downscale delay, so Serve's is 0."""
        autoscaling = self.deployment.autoscaling
        assert autoscaling is not None
        config = autoscaling.serve_config()
        pool = self.pool
        if pool is not None and pool.kind == "managed" and pool.per_token is None:
            config["policy"] = policy_config(
                pool.granularity_minutes, pool.minimum_minutes, autoscaling.downscale_delay_s
            )
            config["downscale_delay_s"] = 0
        return config


def units_of(model: ModelEntry, path: Path | str, catalog: Catalog) -> list[Unit]:
    chips = catalog.chip_kinds()
    return [
        Unit(model, name, d, model_spec(model, d, path, chips[d.chip]), catalog.pool(d.pool))
        for name, d in zip(model.deployment_names(), model.deployments, strict=True)
    ]


def model_spec(model: ModelEntry, deployment: Deployment, path: Path | str, chip: ChipKind) -> ModelSpec:
    """What a backend needs to serve ``model``'s ``deployment`` from ``path`` on ``chip``."""
    return ModelSpec(
        name=model.name,
        weights_path=str(path),
        context_length=model.context_length,
        chip=deployment.chip,
        engine=dict(deployment.engine),
        chip_kind=chip,
        chips_per_replica=deployment.chips_per_replica,
        task=model.task,
    )


def serve_options(unit: Unit, *, pinned_to_pool: bool) -> dict[str, Any]:
    """Serve's deployment options for ``unit`` (without its replica count); ``pinned_to_pool``: the
    cluster's nodes declare pools, so a replica asks for a sliver of its pool's resource."""
    resources: dict[str, Any] = ray_actor_resources(unit.spec.chip_kind, unit.spec.chips_per_replica)
    if pinned_to_pool:
        resources["resources"] = {
            **resources.get("resources", {}),
            pool_resource(unit.deployment.pool): POOL_SHARE,
        }
    return {
        "name": unit.model.name,
        "max_ongoing_requests": unit.deployment.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": 0, "runtime_env": {"env_vars": REPLICA_ENV}, **resources},
        "health_check_period_s": 10,
        "health_check_timeout_s": 60,
        "graceful_shutdown_timeout_s": 30,  # in-flight requests finish on removal or update
    }
