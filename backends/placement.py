"""A replica's chips: find what Ray gave it and make only those devices visible to the engine.

Runs inside the replica process before the backend starts (the engine reads the visible-devices variable
when its runtime initialises).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from backends.base import ModelSpec
from backends.chips import ChipUnavailable, DeviceClaim, claim_devices, visible_devices

logger = logging.getLogger(__name__)


@dataclass
class Placement:
    """What the replica holds: the visible-devices value its engine sees, and the device slots it claimed."""

    devices: str | None = None
    claim: DeviceClaim | None = None


def _node_resource_total(resource: str) -> float:
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if node.get("NodeID") == node_id:
            return float(node.get("Resources", {}).get(resource, 0))
    return 0.0


def place_replica(spec: ModelSpec) -> Placement:
    """Claim this replica's devices (custom-resource chips) and set the chip's visible-devices variable."""
    kind = spec.chip_kind
    placement = Placement()
    if kind.ray_resource is None or spec.chips_per_replica == 0:
        return placement
    if not kind.ray_assigns_devices:
        total = _node_resource_total(kind.ray_resource)
        placement.claim = claim_devices(kind, int(spec.chips_per_replica), int(total))
        if kind.visible_devices_env is not None:
            os.environ[kind.visible_devices_env] = ",".join(str(d) for d in placement.claim.devices)
    placement.devices = visible_devices(kind)
    if kind.visible_devices_env is not None and placement.devices is None:
        raise ChipUnavailable(
            f"the replica was placed on {spec.chips_per_replica:g} {kind.name} chip(s) but "
            f"{kind.visible_devices_env} is not set"
        )
    logger.info(
        "replica placed model=%s chip=%s resource=%s count=%g %s=%s",
        spec.name,
        kind.name,
        kind.ray_resource,
        spec.chips_per_replica,
        kind.visible_devices_env,
        placement.devices,
    )
    return placement
