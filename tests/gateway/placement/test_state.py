"""Placement terms read from the catalog, and the predicted time to first token."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.catalog.schema import load_catalog
from gateway.placement.state import DeploymentLoad, deployment_infos
from tests.gateway.catalog.test_pools import THREE_POOLS


def test_deployment_terms_carry_the_pool_ownership_and_the_marginal_cost(
    write_catalog: Callable[[object], Path],
) -> None:
    catalog = load_catalog(write_catalog(THREE_POOLS))
    own, rented, api = deployment_infos(catalog, catalog.models[0])
    assert (own.pool, own.owned, rented.owned, api.owned) == ("own", True, False, False)
    assert own.output_cost == pytest.approx(0.3 / 3.6)  # power alone, over 3.6M tokens an hour
    assert rented.output_cost == pytest.approx(2.4 / 3.6)
    assert (api.input_cost, api.output_cost) == (0.1, 0.4)


def test_without_pools_every_deployment_counts_as_owned_at_no_cost(
    write_catalog: Callable[[object], Path],
) -> None:
    data = copy.deepcopy(THREE_POOLS)
    del data["pools"]
    catalog = load_catalog(write_catalog(data))
    assert all(d.owned and d.cost(1, 1) == 0 for d in deployment_infos(catalog, catalog.models[0]))


def test_predicted_ttft_adds_the_wait_for_a_slot_only_when_full() -> None:
    load = DeploymentLoad(in_flight=3, capacity=4, queued=0, slot_seconds=8, base_ttft_s=0.25)
    assert load.predicted_ttft_s() == 0.25
    load.in_flight, load.queued = 4, 3
    assert load.predicted_ttft_s() == 0.25 + 4 * 8 / 4
    assert DeploymentLoad(in_flight=0, capacity=0).predicted_ttft_s() == math.inf
