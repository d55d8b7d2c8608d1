"""The six-hour pools replay as a test of the placement policy: the issue's targets for own_first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import pools
from benchmarks.pools_sim import Simulation, World
from benchmarks.pools_trace import make_trace
from gateway.catalog.policy import Routing
from gateway.placement.policies import Placer
from gateway.placement.rental import RentalPlanner


@pytest.fixture(scope="module")
def six_hours(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    results: Path = tmp_path_factory.mktemp("pools")
    return pools.run(6, results, "pytest tests/benchmarks/test_pools.py")


def test_the_replay_drives_the_gateways_own_placement_and_rental_code() -> None:
    world = World()
    sim = Simulation(make_trace(1, 1, world.own_slots, world.shape), world, Routing())
    assert type(sim.placer) is Placer and type(sim.planner) is RentalPlanner


def test_the_same_seed_replays_the_same_day() -> None:
    world = World()
    first, second = (make_trace(3, 1, world.own_slots, world.shape) for _ in range(2))
    assert first.times == second.times and first.pulses == second.pulses
    assert len(first.pulses) == 1  # a dozen a day, pro rata


def test_own_first_sends_next_to_nothing_to_rented_capacity_while_own_has_headroom(
    six_hours: dict[str, Any],
) -> None:
    ours = six_hours["policies"]["own_first"]
    assert ours["rented_tokens_while_own_had_headroom"] <= 0.005
    assert six_hours["policies"]["static_weighted"]["rented_tokens_while_own_had_headroom"] > 0.1


def test_own_first_drains_back_within_a_minute_of_each_pulse(six_hours: dict[str, Any]) -> None:
    assert six_hours["policies"]["own_first"]["drain_back_s"]["max"] <= 60


def test_own_first_earns_more_than_every_baseline_and_95_percent_of_the_oracle(
    six_hours: dict[str, Any],
) -> None:
    by_policy = six_hours["policies"]
    ours = by_policy["own_first"]
    for baseline in ("round_robin", "static_weighted"):
        assert ours["margin_amortised"] > by_policy[baseline]["margin_amortised"]
        assert ours["margin_marginal"] > by_policy[baseline]["margin_marginal"]
    for kind in ("margin_marginal", "margin_amortised"):
        assert ours[kind] >= 0.95 * by_policy["oracle"][kind]


def test_own_first_fills_own_capacity_before_any_baseline(six_hours: dict[str, Any]) -> None:
    by_policy = six_hours["policies"]
    assert by_policy["own_first"]["own_utilisation"] > by_policy["static_weighted"]["own_utilisation"]
    assert by_policy["own_first"]["own_utilisation"] > by_policy["round_robin"]["own_utilisation"]


def test_interactive_requests_meet_their_1s_slo_995_in_1000(six_hours: dict[str, Any]) -> None:
    assert six_hours["policies"]["own_first"]["slo_attainment"]["1s"] >= 0.995


def test_at_most_two_rent_or_release_actions_per_pulse(six_hours: dict[str, Any]) -> None:
    assert six_hours["policies"]["own_first"]["rent_release_actions"]["max_per_pulse"] <= 2


def test_a_placement_decision_is_timed_and_recorded_not_asserted(six_hours: dict[str, Any]) -> None:
    decision = six_hours["placement_decision"]
    assert decision["calls"] > 0 and 0 < decision["p50_us"] <= decision["p99_us"]
