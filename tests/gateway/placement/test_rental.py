"""Renting chip-hours for a spill and giving them back at billing boundaries."""

from __future__ import annotations

import pytest

from gateway.catalog.pools import Pool
from gateway.placement.rental import Rental, RentalPlanner

PER_MINUTE = Pool.model_validate(
    {
        "name": "rented",
        "kind": "managed",
        "chips": {"nvidia": {"hourly_fee": 2}},
        "billing_granularity_minutes": 1,
        "minimum_rental_minutes": 10,
    }
)


def planner() -> RentalPlanner:
    return RentalPlanner(PER_MINUTE, slots_per_replica=10, max_replicas=5, up_delay_s=10, down_delay_s=30)


def test_a_sustained_overflow_rents_enough_replicas_in_one_action() -> None:
    plan = planner()
    assert plan.plan(0, overflow=34, rentals=[]).rent == 0  # not yet sustained
    assert plan.plan(10, overflow=30, rentals=[]).rent == 4  # 30 x 1.3 / 10 slots, rounded up
    held = [Rental(rented_at=10, ready_at=130)] * 4
    assert plan.plan(11, overflow=500, rentals=held).rent == 0  # those starting are not seen yet
    assert plan.plan(130, overflow=500, rentals=held).rent == 0  # serving: a shortfall must last
    assert plan.plan(270, overflow=500, rentals=held).rent == 0  # settle_s / 2 (150 s) before more
    assert plan.plan(280, overflow=500, rentals=held).rent == 1  # up to max_replicas


def test_a_partial_release_waits_until_the_overflow_was_lower_for_the_settle_time() -> None:
    plan = RentalPlanner(PER_MINUTE, slots_per_replica=10, max_replicas=4, settle_s=120)
    held = [Rental(rented_at=0, ready_at=120)] * 4
    actions = []
    for t in range(0, 800):
        result = plan.plan(float(t), 35 if t < 600 else 10, held)  # 4 replicas wanted, then 2
        assert result.rent == 0
        if result.release:
            actions.append((t, result.release))
            held = [r for i, r in enumerate(held) if i not in result.release]
    assert actions == [(720, (0, 1))]  # 120 s after the overflow fell: 10 x 1.3 / 10 slots, 2 kept


def test_a_blip_shorter_than_the_up_delay_rents_nothing() -> None:
    plan = planner()
    assert plan.plan(0, overflow=30, rentals=[]).rent == 0
    assert plan.plan(5, overflow=0, rentals=[]).rent == 0
    assert plan.plan(12, overflow=30, rentals=[]).rent == 0
    assert plan.plan(20, overflow=4, rentals=[]).rent == 0  # under half a replica: the API takes it


def test_replicas_are_released_only_after_the_overflow_ebbs_and_at_a_billing_boundary() -> None:
    plan = planner()
    held = [Rental(rented_at=0, ready_at=120)] * 3
    for t in range(0, 700, 1):
        overflow = 25 if t < 500 else 0
        result = plan.plan(float(t), overflow, held)
        if t < 530:
            assert result.release == (), t  # the 10-minute minimum, then the overflow gone for 30 s
        elif t == 600:
            assert result.release == (0, 1, 2)  # at the end of the 10-minute minimum, not a minute later
            break
        else:
            assert result.release == (), t


@pytest.mark.parametrize(
    "pool",
    [{"kind": "owned"}, {"kind": "managed", "per_token": {"input_per_million": 1, "output_per_million": 1}}],
)
def test_only_chip_hour_rentals_are_planned(pool: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not rented by the chip-hour"):
        RentalPlanner(Pool.model_validate({"name": "p", **pool}), slots_per_replica=1, max_replicas=1)
