"""Does the cluster have the chips a catalog asks for? Checked before anything is deployed.

Ray Serve leaves a replica that no node can host PENDING without end. The gateway compares what the catalog
needs (per replica and in all) with what the Ray nodes declare, and refuses the catalog with a message
that names the model, the chip, the Ray resource and the ``ray start`` option that would provide it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from backends.chips import ChipKind
from gateway.catalog.pools import pool_resource
from gateway.catalog.schema import Catalog


class InsufficientChips(RuntimeError):
    """The catalog asks for chips the cluster does not have."""


@dataclass(frozen=True)
class ChipDemand:
    model: str
    chip: str
    resource: str
    per_replica: float
    replicas: int

    @property
    def total(self) -> float:
        return self.per_replica * self.replicas


def chip_demands(catalog: Catalog) -> list[ChipDemand]:
    """Every deployment that needs a Ray resource, with how much."""
    kinds = catalog.chip_kinds()
    demands = []
    for model in catalog.models:
        for name, deployment in zip(model.deployment_names(), model.deployments, strict=True):
            kind: ChipKind = kinds[deployment.chip]
            if kind.ray_resource is None or deployment.chips_per_replica == 0:
                continue
            demands.append(
                ChipDemand(
                    name, kind.name, kind.ray_resource, deployment.chips_per_replica, deployment.max_replicas
                )
            )
    return demands


def pool_problems(catalog: Catalog, nodes: Sequence[Mapping[str, float]], in_gateway: set[str]) -> list[str]:
    """On a cluster, the pools whose deployments no node can host: no node declares the pool's resource.
    ``in_gateway``: deployments that run in the gateway process (a rented API), which need no node."""
    problems = []
    for model in catalog.models:
        for name, deployment in zip(model.deployment_names(), model.deployments, strict=True):
            resource = pool_resource(deployment.pool)
            if name in in_gateway or any(node.get(resource, 0) > 0 for node in nodes):
                continue
            problems.append(
                f"deployment {name!r} runs in pool {deployment.pool!r}, but no node of the cluster is in "
                f"that pool; start its nodes with `ray start --resources='{{\"{resource}\": 1}}'` (see "
                f"`maas node resources --pool {deployment.pool}`)"
            )
    return problems


def _declare_hint(resource: str) -> str:
    if resource == "GPU":
        return "`ray start --num-gpus=N` (Ray also detects NVIDIA GPUs itself)"
    if resource == "NPU":
        return "`ray start --resources='{\"NPU\": N}'` (Ray also detects Ascend NPUs itself)"
    return f"`ray start --resources='{{\"{resource}\": N}}'` (see `maas node resources`)"


def capacity_problems(demands: Sequence[ChipDemand], nodes: Sequence[Mapping[str, float]]) -> list[str]:
    """Why ``demands`` cannot all be placed on ``nodes`` (each node's Ray resources); empty when they can."""
    problems = []
    by_resource: dict[str, list[ChipDemand]] = {}
    for demand in demands:
        by_resource.setdefault(demand.resource, []).append(demand)
    for resource, wanted in sorted(by_resource.items()):
        offered = [float(node.get(resource, 0)) for node in nodes]
        largest, total = max(offered, default=0.0), sum(offered)
        for demand in wanted:
            if demand.per_replica > largest:
                problems.append(
                    f"model {demand.model!r} needs {demand.per_replica:g} {demand.chip} chip(s) "
                    f"(Ray resource {resource}) per replica, but the largest node offers {largest:g}; "
                    f"declare them with {_declare_hint(resource)}"
                )
        needed = sum(d.total for d in wanted)
        if needed > total and all(d.per_replica <= largest for d in wanted):
            models = ", ".join(f"{d.model} {d.replicas}x{d.per_replica:g}" for d in wanted)
            problems.append(
                f"the catalog needs {needed:g} {resource} in all ({models}) but the cluster offers "
                f"{total:g} over {len(nodes)} node(s)"
            )
    return problems
