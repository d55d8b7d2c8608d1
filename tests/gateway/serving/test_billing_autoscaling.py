"""Rented chip-hour replicas go only at billing boundaries: the policy's decisions, and the same policy as
Ray Serve 2.60's autoscaler runs it (its config, its pickling by value, its wrapper and context)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.catalog.schema import parse_catalog
from gateway.serving.billing_autoscaling import (
    LOWER_SINCE,
    RENTED_AT,
    BillingBoundaryPolicy,
    policy_config,
    release_at,
)
from gateway.serving.units import units_of

HOUR, MINUTE = 3600.0, 60.0


def policy(delay_s: float = 0.0) -> BillingBoundaryPolicy:
    return BillingBoundaryPolicy(period_s=HOUR, minimum_s=HOUR, downscale_delay_s=delay_s)


def test_a_replica_can_go_at_the_end_of_its_minimum_rental_or_of_a_later_period() -> None:
    assert release_at(0, 10 * MINUTE, period_s=MINUTE, minimum_s=10 * MINUTE) == 10 * MINUTE
    assert release_at(0, 10.5 * MINUTE, period_s=MINUTE, minimum_s=10 * MINUTE) == 11 * MINUTE
    assert release_at(100, 200, period_s=HOUR, minimum_s=HOUR) == 100 + HOUR


def test_an_idle_rented_replica_is_kept_until_its_paid_hour_ends_then_released() -> None:
    p = policy()
    wanted, state = p.decide(2, 2, {}, now=0)  # two replicas rented at 0
    assert wanted == 2 and state[RENTED_AT] == [0, 0]
    wanted, state = p.decide(0, 2, state, now=60)  # idle after a minute: the hour is paid
    assert wanted == 2
    wanted, state = p.decide(0, 2, state, now=HOUR - 30)
    assert wanted == 2
    wanted, state = p.decide(0, 2, state, now=HOUR - 0.5)  # at the boundary: both go, in one action
    assert wanted == 0 and state[RENTED_AT] == []


def test_load_back_before_the_boundary_keeps_the_replica_and_resets_the_wish() -> None:
    p = policy()
    _, state = p.decide(1, 1, {}, now=0)
    _, state = p.decide(0, 1, state, now=600)
    assert state[LOWER_SINCE] == 600
    wanted, state = p.decide(1, 1, state, now=900)
    assert wanted == 1 and state[LOWER_SINCE] is None


def test_the_downscale_delay_must_pass_as_well_as_the_boundary() -> None:
    p = policy(delay_s=120)
    _, state = p.decide(1, 1, {}, now=0)
    wanted, state = p.decide(0, 1, state, now=HOUR - 60)  # wanted lower only since a minute ago
    assert wanted == 1
    wanted, state = p.decide(0, 1, state, now=HOUR - 0.5)
    assert wanted == 1  # the boundary passes within the delay: the next hour is paid, so it stays
    wanted, state = p.decide(0, 1, state, now=2 * HOUR - 0.5)
    assert wanted == 0


def test_replicas_whose_period_ends_first_go_first_and_the_others_wait_for_theirs() -> None:
    p = policy()
    _, state = p.decide(1, 1, {}, now=0)
    _, state = p.decide(2, 2, state, now=1800)  # a second one rented half an hour later
    assert state[RENTED_AT] == [0, 1800]
    wanted, state = p.decide(0, 2, state, now=HOUR - 0.5)
    assert wanted == 1 and state[RENTED_AT] == [1800]
    wanted, state = p.decide(0, 1, state, now=HOUR + 1000)
    assert wanted == 1
    wanted, state = p.decide(0, 1, state, now=1800 + HOUR - 0.2)
    assert wanted == 0


def context(target: int, requests: float, state: dict[str, Any], now: float, config: Any) -> Any:
    from ray.serve._private.common import DeploymentID
    from ray.serve.config import AutoscalingContext

    return AutoscalingContext(
        deployment_id=DeploymentID(name="m", app_name="model-m"),
        deployment_name="m",
        app_name="model-m",
        current_num_replicas=target,
        target_num_replicas=target,
        running_replicas=[],
        total_num_requests=requests,
        total_queued_requests=0.0,
        aggregated_metrics={},
        raw_metrics={},
        capacity_adjusted_min_replicas=config.min_replicas,
        capacity_adjusted_max_replicas=config.max_replicas,
        policy_state=state,
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=now,
        config=config,
    )


def test_serve_runs_the_policy_as_configured_and_releases_at_the_boundary_only() -> None:
    from ray.serve._private.autoscaling_state import _resolve_policy_callable
    from ray.serve.autoscaling_policy import _apply_autoscaling_config
    from ray.serve.config import AutoscalingConfig

    config = AutoscalingConfig(
        min_replicas=0,
        max_replicas=4,
        target_ongoing_requests=2,
        downscale_delay_s=0,
        upscale_delay_s=0,
        policy=policy_config(period_minutes=60, minimum_minutes=60, downscale_delay_s=0),
    )
    decide = _apply_autoscaling_config(_resolve_policy_callable(config.policy))  # as Serve's controller
    replicas, state = decide(context(0, 5, {}, now=0, config=config))  # cold start: at once
    assert replicas >= 1
    replicas, state = decide(context(2, 8, state, now=1, config=config))  # 8 in flight, 2 each: 4
    assert replicas == 4
    replicas, state = decide(context(4, 0, state, now=600, config=config))  # idle: the hour is paid
    assert replicas == 4
    replicas, state = decide(context(4, 0, state, now=HOUR + 0.5, config=config))
    assert replicas < 4  # the ones rented at 1 s go at their boundary


def test_only_autoscaled_deployments_on_rented_chip_hours_get_the_policy() -> None:
    catalog = parse_catalog(
        {
            "pools": [
                {"name": "own", "kind": "owned", "chips": {"cpu": {"purchase_price": 1000}}},
                {
                    "name": "hours",
                    "kind": "managed",
                    "chips": {"cpu": {"hourly_fee": 1.2}},
                    "billing_granularity_minutes": 1,
                    "minimum_rental_minutes": 10,
                },
            ],
            "models": [
                {
                    "name": "m",
                    "family": "llama",
                    "context_length": 512,
                    "weights": {"kind": "local", "path": "/m"},
                    "deployments": [
                        {"pool": "own", "autoscaling": {"min_replicas": 0, "max_replicas": 1}},
                        {
                            "pool": "hours",
                            "tokens_per_second": 50,
                            "autoscaling": {"min_replicas": 0, "max_replicas": 2, "downscale_delay_s": 45},
                        },
                    ],
                }
            ],
        },
        "test",
    )
    own, rented = units_of(catalog.models[0], "/m", catalog)
    assert "policy" not in own.autoscaling_config()
    config = rented.autoscaling_config()
    assert config["downscale_delay_s"] == 0  # the policy holds the delay itself
    assert config["policy"]["policy_kwargs"] == {
        "period_s": 60.0,
        "minimum_s": 600.0,
        "downscale_delay_s": 45,
    }


@pytest.mark.parametrize("delay", [0.0, 30.0])
def test_the_policy_survives_the_pickling_serve_does(delay: float) -> None:
    from ray.serve.config import AutoscalingPolicy

    serialized = AutoscalingPolicy(**policy_config(60, 60, delay))
    from ray.serve._private.autoscaling_state import _resolve_policy_callable

    instance = _resolve_policy_callable(serialized)
    assert instance.downscale_delay_s == delay and instance.period_s == HOUR


def test_a_replica_scaled_up_from_zero_is_billed_from_serves_decision_not_from_when_it_ran() -> None:
    """Serve calls no custom policy while a deployment starts from zero: the rental dates from its
    scale-up, which is when the node is billed from."""
    p = policy()
    wanted, state = p.decide(0, 1, {}, now=45, scaled_up_at=5)  # first called once the replica runs
    assert wanted == 1 and state[RENTED_AT] == [5]
    wanted, state = p.decide(0, 1, state, now=5 + HOUR - 0.5)
    assert wanted == 0
