"""The environment the gateway gives Ray before starting a private head: Ray's background work trimmed,
the dashboard's feeds off unless the dashboard is asked for, and an operator's own setting kept."""

from __future__ import annotations

import os

import pytest

from gateway.serving.ray_env import NO_DASHBOARD_ENV, PRIVATE_HEAD_ENV, prepare_ray_environment


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*PRIVATE_HEAD_ENV, *NO_DASHBOARD_ENV, "RAY_AUTH_TOKEN", "RAY_AUTH_MODE"]:
        monkeypatch.delenv(name, raising=False)
    # prepare_ray_environment writes os.environ directly: monkeypatch restores what it touched
    monkeypatch.setattr(os, "environ", dict(os.environ))  # type: ignore[arg-type]


def test_a_private_head_without_the_dashboard_slows_the_agent_loops_that_only_feed_the_dashboard() -> None:
    prepare_ray_environment(private_head=True, dashboard=False)
    assert os.environ["REPORTER_UPDATE_INTERVAL_MS"] == "60000"
    assert os.environ["EVENT_AGENT_REPORT_INTERVAL_SECONDS"] == "1"
    assert os.environ["RAY_enable_metrics_collection"] == "0"  # noqa: SIM112 (Ray spells it this way)
    assert os.environ["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"] == "1"


def test_a_private_head_with_the_dashboard_keeps_every_feed_of_it() -> None:
    prepare_ray_environment(private_head=True, dashboard=True)
    assert not set(NO_DASHBOARD_ENV) & set(os.environ)
    assert os.environ["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"] == "1"


def test_an_operators_own_setting_wins_over_the_trimmed_default() -> None:
    os.environ["REPORTER_UPDATE_INTERVAL_MS"] = "2500"
    prepare_ray_environment(private_head=True, dashboard=False)
    assert os.environ["REPORTER_UPDATE_INTERVAL_MS"] == "2500"


def test_joining_an_operators_cluster_leaves_its_head_settings_alone() -> None:
    prepare_ray_environment(private_head=False, dashboard=False)
    assert not (set(NO_DASHBOARD_ENV) | set(PRIVATE_HEAD_ENV)) & set(os.environ)
