"""Placement policies: own first, spill, drain back, hysteresis, cost, weights, order, allowed pools."""

from __future__ import annotations

import pytest

from gateway.catalog.policy import Routing
from gateway.errors import PoolNotAllowed, openai_error
from gateway.placement.policies import Placer
from gateway.placement.state import DeploymentInfo, PlacementRequest
from tests.gateway.placement.conftest import API, OWN, RENTED, loads

REQUEST = PlacementRequest(input_tokens=400, output_tokens=200)
INTERACTIVE = PlacementRequest(input_tokens=400, output_tokens=200, ttft_slo_s=1.0)
BATCH = PlacementRequest(input_tokens=400, output_tokens=200, ttft_slo_s=30.0)


def placer(deployments: tuple[DeploymentInfo, ...], policy: str = "own_first") -> Placer:
    return Placer("m", Routing(policy=policy), deployments)  # type: ignore[arg-type]


def test_own_first_fills_own_capacity_then_spills_to_the_cheaper_rented_deployment(
    three_pools: tuple[DeploymentInfo, ...],
) -> None:
    place = placer(three_pools)
    first = place.place(REQUEST, loads(own=7), now=0)
    assert first.order == (OWN, RENTED, API) and not first.spilled
    full = place.place(REQUEST, loads(own=8), now=0)
    assert full.order == (RENTED, API, OWN) and full.spilled  # own last: it could still queue it


def test_own_first_drains_back_as_soon_as_an_own_slot_frees(three_pools: tuple[DeploymentInfo, ...]) -> None:
    place = placer(three_pools)
    assert place.place(INTERACTIVE, loads(own=8, own_queued=4, rented=5), now=0).order[0] == RENTED
    back = place.place(INTERACTIVE, loads(own=7, rented=5), now=1)
    assert back.order[0] == OWN and not back.spilled


def test_a_request_whose_slo_the_own_queue_meets_waits_for_own_capacity(
    three_pools: tuple[DeploymentInfo, ...],
) -> None:
    place = placer(three_pools)
    # own full with 2 waiting: (2 + 1) x 8 s / 8 slots = 3 s of queue, within 30 s, not within 1 s
    assert place.place(BATCH, loads(own=8, own_queued=2), now=0).order[0] == OWN
    assert place.place(INTERACTIVE, loads(own=8, own_queued=2), now=0).order[0] == RENTED


def test_hysteresis_keeps_spilling_until_the_predicted_wait_is_well_under_the_slo(
    three_pools: tuple[DeploymentInfo, ...],
) -> None:
    place = placer(three_pools)
    slo = PlacementRequest(input_tokens=400, output_tokens=200, ttft_slo_s=3.5)
    # predicted TTFT: 0.2 s + (queued + 1) x 8 s / 8 slots
    assert place.place(slo, loads(own=8, own_queued=3), now=0).order[0] == RENTED  # 4.2 s > 3.5 s
    # 3.2 s is within the SLO but not within 0.8 x 3.5 s = 2.8 s; 2.2 s is
    assert place.place(slo, loads(own=8, own_queued=2), now=1).order[0] == RENTED
    assert place.place(slo, loads(own=8, own_queued=1), now=2).order[0] == OWN
    # a fresh placer (no memory of passing own over) queues at 3.2 s
    assert placer(three_pools).place(slo, loads(own=8, own_queued=2), now=0).order[0] == OWN


def test_cheapest_goes_by_marginal_cost_of_the_request(three_pools: tuple[DeploymentInfo, ...]) -> None:
    own, rented, api = three_pools
    pricey_own = (DeploymentInfo("m/0", "own", owned=True, output_cost=0.9), rented, api)
    assert placer(pricey_own, "cheapest").place(REQUEST, loads(), now=0).order == (RENTED, API, OWN)
    assert placer(pricey_own, "own_first").place(REQUEST, loads(), now=0).order[0] == OWN
    long_prompt = PlacementRequest(input_tokens=100_000, output_tokens=10)
    assert placer(three_pools, "cheapest").place(long_prompt, loads(), now=0).order == (OWN, RENTED, API)


def test_weighted_splits_by_weight_and_ordered_keeps_catalog_order(
    three_pools: tuple[DeploymentInfo, ...],
) -> None:
    own, rented, api = three_pools
    weighted = (
        DeploymentInfo("m/0", "own", owned=True, weight=3),
        DeploymentInfo("m/1", "rented", owned=False, weight=1),
    )
    place = placer(weighted, "weighted")
    firsts = [place.place(REQUEST, loads()[:2], now=0).order[0] for _ in range(8)]
    assert firsts.count(OWN) == 6 and firsts.count(RENTED) == 2
    ordered = placer((api, own, rented), "ordered")
    assert ordered.place(REQUEST, [loads()[2], *loads()[:2]], now=0).order == (0, 1, 2)


def test_a_cooling_deployment_is_skipped_until_its_retry_after(
    three_pools: tuple[DeploymentInfo, ...],
) -> None:
    place = placer(three_pools)
    state = loads(own=8, own_queued=8, rented=8)
    state[RENTED].queue_limit = 0
    state[API].unavailable_until = 60.0
    assert place.place(REQUEST, state, now=30).order == ()  # own's queue is full too: nothing to try
    assert place.place(REQUEST, state, now=60).order == (API,)


def test_a_tenant_limited_to_its_pools_is_placed_only_there(three_pools: tuple[DeploymentInfo, ...]) -> None:
    place = placer(three_pools)
    own_only = PlacementRequest(400, 200, ttft_slo_s=1.0, allowed_pools=frozenset({"own"}))
    placement = place.place(own_only, loads(own=8, own_queued=4), now=0)
    assert placement.order == (OWN,) and not placement.spilled  # waits on own rather than spilling
    rented_only = PlacementRequest(400, 200, allowed_pools=frozenset({"rented"}))
    placement = place.place(rented_only, loads(), now=0)
    assert placement.order == (RENTED,) and not placement.spilled  # no owned pool was open to it


def test_a_tenant_no_pool_of_the_model_may_serve_is_refused_with_a_403(
    three_pools: tuple[DeploymentInfo, ...],
) -> None:
    request = PlacementRequest(400, 200, allowed_pools=frozenset({"eu-own"}))
    with pytest.raises(PoolNotAllowed) as info:
        placer(three_pools).place(request, loads(), now=0)
    error = openai_error(info.value)
    assert (error.status, error.type, error.code) == (403, "permission_error", "pool_not_allowed")
    assert "runs in pools api, own, rented" in error.message and "only from eu-own" in error.message
