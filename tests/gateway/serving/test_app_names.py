"""Serve application names carry the installation's id: two installations on one Ray cluster neither collide
nor see each other's applications; the embedded default keeps its ``model-<name>``."""

from __future__ import annotations

import pytest

from gateway.serving.app_names import app_name, app_prefix
from gateway.serving.serve_runtime import RayOptions, ServeRuntime
from gateway.serving.serve_status import _running_replicas
from tests.gateway.catalog.test_model_prep import tiny

INSTALLATIONS = [None, "a", "a-b", "b", "model", "prod-eu-1"]


def test_the_embedded_default_keeps_its_application_names() -> None:
    assert app_name(tiny(name="qwen")) == "model-qwen"
    assert ServeRuntime(RayOptions()).app_name("qwen") == "model-qwen"


def test_two_installations_name_the_same_model_apart() -> None:
    model = tiny(name="qwen")
    names = {app_name(model, installation) for installation in INSTALLATIONS}
    assert len(names) == len(INSTALLATIONS)
    assert ServeRuntime(RayOptions(installation="prod-eu-1")).app_name(model.name) == "prod-eu-1_model-qwen"


@pytest.mark.parametrize("mine", INSTALLATIONS)
def test_no_installation_claims_another_installations_applications(mine: str | None) -> None:
    """Status, replica counts and shutdown go by prefix: another installation's apps never match it,
    whatever the model names (a model name may itself look like a prefix)."""
    model_names = ["qwen", "model-qwen", "a_model-x", "b-x"]
    for other in INSTALLATIONS:
        if other == mine:
            continue
        for name in model_names:
            assert not app_name(tiny(name=name), other).startswith(app_prefix(mine))


def test_replica_counts_read_only_this_installations_applications() -> None:
    running = {"deployments": {"d": {"replicas": [{"state": "RUNNING"}]}}}
    details = {"applications": {"model-qwen": running, "a_model-qwen": running, "b_model-qwen": running}}
    assert _running_replicas(details, app_prefix("a"), {"qwen"}) == {"qwen": 1}
    details["applications"] = {"model-qwen": running, "b_model-qwen": running}
    assert _running_replicas(details, app_prefix("a"), {"qwen"}) == {}


@pytest.mark.parametrize("bad", ["", "A", "a_b", "-a", "a-", "a.b", "x" * 33, "a{b}"])
def test_an_installation_id_that_could_blur_the_names_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="installation id"):
        app_prefix(bad)
    with pytest.raises(ValueError, match="installation id"):
        ServeRuntime(RayOptions(installation=bad))
