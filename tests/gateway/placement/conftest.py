"""Placement fixtures: a model with an owned, a rented chip-hour and a rented per-token deployment."""

from __future__ import annotations

import pytest

from gateway.placement.state import DeploymentInfo, DeploymentLoad

OWN, RENTED, API = 0, 1, 2


@pytest.fixture
def three_pools() -> tuple[DeploymentInfo, ...]:
    return (
        DeploymentInfo("m/0", "own", owned=True, output_cost=0.03),
        DeploymentInfo("m/1", "rented", owned=False, output_cost=0.35),
        DeploymentInfo("m/2", "api", owned=False, input_cost=0.1, output_cost=0.5),
    )


def loads(own: int = 0, rented: int = 0, api: int = 0, *, own_queued: int = 0) -> list[DeploymentLoad]:
    """Each deployment 8 slots (the API 100) and as many queue places, with ``n`` requests in flight."""
    return [
        DeploymentLoad(own, 8, queued=own_queued, queue_limit=8, slot_seconds=8.0, base_ttft_s=0.2),
        DeploymentLoad(rented, 8, queue_limit=8, slot_seconds=8.0, base_ttft_s=0.2),
        DeploymentLoad(api, 100, queue_limit=0, slot_seconds=8.0, base_ttft_s=0.35),
    ]
