"""The Ray worker groups a catalog needs: one per chip kind and pool, sized from its deployments.

Every deployment whose replicas Ray Serve places is counted, all deployments of a model (the fleet the
catalog describes), not only the one serving today. Two kinds of deployment need no worker at all: those in
a pool paid per token (a rented API has no nodes) and those whose backend runs in the gateway process
(``gateway.serving.local_client.runs_in_gateway``: an HTTP client asking for no chips).

An accelerator group's nodes carry ``chips_per_node`` chips each (8 unless told otherwise); its replicas are
packed onto them first-fit by decreasing size, since a replica never spans nodes. A group that fits on one
node gets one pod with only the chips it needs. A ``cpu`` group gets one pod per replica: a CPU engine uses
its pod's cores, and Ray does not count them for replicas (they ask for no CPUs).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from backends.chips import ChipKind
from gateway.catalog.pools import pool_resource
from gateway.catalog.schema import Catalog
from gateway.kubernetes.options import DNS_LABEL, RenderError, RenderOptions
from gateway.serving.local_client import runs_in_gateway


@dataclass(frozen=True)
class ReplicaDemand:
    """One deployment's replicas in a group."""

    model: str
    deployment: int
    """Index in the model's ``deployments``."""
    replicas: int
    chips_per_replica: float


@dataclass(frozen=True)
class WorkerGroup:
    """A KubeRay worker group: ``pods`` identical pods of one chip kind in one pool."""

    name: str
    chip: ChipKind
    pool: str
    pods: int
    chips_per_pod: int
    """Device-plugin units each pod asks for (0 on the CPU)."""
    device_resource: str | None
    """The device plugin's resource name; ``None`` when the pods take no chips."""
    image: str
    demands: tuple[ReplicaDemand, ...]

    @property
    def ray_resources(self) -> dict[str, int]:
        """The custom resources a node of this group declares (``ray start --resources``): its chips
        unless Ray counts them as ``GPU`` (``--num-gpus``), and one unit of its pool's resource."""
        resources = {pool_resource(self.pool): 1}
        resource = self.chip.ray_resource
        if resource is not None and resource != "GPU" and self.chips_per_pod:
            resources[resource] = self.chips_per_pod
        return resources

    @property
    def num_gpus(self) -> int:
        return self.chips_per_pod if self.chip.ray_resource == "GPU" else 0


def group_name(chip: str, pool: str) -> str:
    name = f"{re.sub(r'[^a-z0-9-]', '-', chip)}-{pool}"
    if not DNS_LABEL.match(name):
        raise RenderError(f"worker group {name!r} (chip {chip!r}, pool {pool!r}) is not a DNS label")
    return name


def needs_workers(catalog: Catalog, backend: str, pool: str, chips_per_replica: float) -> bool:
    """Whether a deployment's replicas run on Ray worker nodes (not in the gateway, not a rented API)."""
    declared = catalog.pool(pool)
    if declared is not None and declared.per_token is not None:
        return False
    return not runs_in_gateway(backend, chips_per_replica)


def demands_by_group(catalog: Catalog) -> dict[tuple[str, str], list[ReplicaDemand]]:
    """Replica demands keyed by (chip kind, pool), in catalog order."""
    groups: dict[tuple[str, str], list[ReplicaDemand]] = {}
    for model in catalog.models:
        for index, d in enumerate(model.deployments):
            if needs_workers(catalog, d.backend, d.pool, d.chips_per_replica):
                demand = ReplicaDemand(model.name, index, d.replicas, d.chips_per_replica)
                groups.setdefault((d.chip, d.pool), []).append(demand)
    return groups


def pack(sizes: list[float], capacity: int) -> list[float]:
    """First-fit decreasing: the chips used on each node when replicas of ``sizes`` fill nodes."""
    nodes: list[float] = []
    for size in sorted(sizes, reverse=True):
        for i, used in enumerate(nodes):
            if used + size <= capacity + 1e-9:
                nodes[i] = used + size
                break
        else:
            nodes.append(size)
    return nodes


def plan_worker_groups(catalog: Catalog, options: RenderOptions) -> list[WorkerGroup]:
    """The worker groups, sorted by name; ``RenderError`` names what is missing or cannot fit."""
    kinds = catalog.chip_kinds()
    _check_kinds(kinds, options)
    groups = []
    for (chip, pool), demands in demands_by_group(catalog).items():
        kind = kinds[chip]
        name = group_name(chip, pool)
        image = options.images.get(chip)
        if image is None:
            raise RenderError(
                f"no container image for chip kind {chip!r} (worker group {name}: "
                f"{_models(demands)}); pass --image {chip}=REGISTRY/IMAGE:TAG"
            )
        if kind.ray_resource is None:
            pods, chips = sum(d.replicas for d in demands), 0
        else:
            pods, chips = _size_accelerator_group(name, kind, demands, options.node_chips(chip))
        device = options.device_resources.get(chip, kind.device_plugin_resource) if chips else None
        if chips and device is None:
            raise RenderError(
                f"chip kind {chip!r} has no known Kubernetes device-plugin resource (worker group {name}); "
                f"declare device_plugin_resource under `chips:` in the catalog or pass "
                f"--device-resource {chip}=VENDOR.COM/RESOURCE"
            )
        groups.append(WorkerGroup(name, kind, pool, pods, chips, device, image, tuple(demands)))
    return sorted(groups, key=lambda g: g.name)


def _size_accelerator_group(
    name: str, kind: ChipKind, demands: list[ReplicaDemand], capacity: int
) -> tuple[int, int]:
    for d in demands:
        if d.chips_per_replica > capacity:
            raise RenderError(
                f"model {d.model!r} needs {d.chips_per_replica:g} {kind.name} chips per replica but the "
                f"nodes of worker group {name} carry {capacity}; pass --chips-per-node "
                f"{kind.name}={math.ceil(d.chips_per_replica)} or more"
            )
    sizes = [d.chips_per_replica for d in demands for _ in range(d.replicas)]
    nodes = pack(sizes, capacity)
    return len(nodes), capacity if len(nodes) > 1 else math.ceil(nodes[0] - 1e-9)


def _check_kinds(kinds: Mapping[str, ChipKind], options: RenderOptions) -> None:
    named = {
        "--image": options.images,
        "--chips-per-node": options.chips_per_node,
        "--device-resource": options.device_resources,
    }
    for option, by_kind in named.items():
        unknown = sorted(set(by_kind) - set(kinds))
        if unknown:
            raise RenderError(
                f"{option} names chip kind(s) {', '.join(unknown)} that the catalog does not know; "
                f"known: {', '.join(sorted(kinds))}"
            )


def _models(demands: list[ReplicaDemand]) -> str:
    return ", ".join(dict.fromkeys(d.model for d in demands))
