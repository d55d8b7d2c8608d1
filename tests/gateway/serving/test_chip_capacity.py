"""Chips in the catalog: kinds and counts validated, Ray resources mapped, capacity checked before deploy."""

from __future__ import annotations

from typing import Any

import pytest

from backends.chips import BUILTIN_CHIPS, ray_actor_resources
from gateway.catalog.schema import CatalogError, parse_catalog
from gateway.serving.chip_capacity import capacity_problems, chip_demands, pool_problems
from gateway.serving.chip_report import chip_report


def catalog(*deployments: dict[str, Any], chips: list[dict[str, Any]] | None = None) -> Any:
    models = [
        {
            "name": f"m{i}",
            "family": "llama",
            "context_length": 512,
            "weights": {"kind": "local", "path": "/models/x"},
            "deployments": [deployment],
        }
        for i, deployment in enumerate(deployments)
    ]
    return parse_catalog({"models": models, "chips": chips or []}, "test.yaml")


def test_accelerators_default_to_the_tensor_parallel_size_and_the_cpu_to_no_chip() -> None:
    parsed = catalog(
        {"chip": "nvidia", "engine": {"tensor_parallel_size": 4}}, {"chip": "ascend"}, {"chip": "cpu"}
    )
    assert [m.deployments[0].chips_per_replica for m in parsed.models] == [4, 1, 0]


def test_each_chip_kind_maps_to_its_ray_resource() -> None:
    assert ray_actor_resources(BUILTIN_CHIPS["nvidia"], 2) == {"num_gpus": 2}
    assert ray_actor_resources(BUILTIN_CHIPS["ascend"], 1) == {"resources": {"NPU": 1}}
    assert ray_actor_resources(BUILTIN_CHIPS["enflame"], 1) == {"resources": {"GCU": 1}}
    assert ray_actor_resources(BUILTIN_CHIPS["cpu"], 0) == {}


def test_an_unknown_chip_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(CatalogError, match=r"chip 'tpu-x'.*known: amd, ascend"):
        catalog({"chip": "tpu-x"})


def test_an_operator_declares_a_new_chip_kind_as_data() -> None:
    parsed = catalog(
        {"chip": "hexaflake", "chips_per_replica": 2},
        chips=[{"name": "hexaflake", "ray_resource": "HXF", "visible_devices_env": "HXF_VISIBLE_DEVICES"}],
    )
    kind = parsed.chip_kinds()["hexaflake"]
    assert (kind.ray_resource, kind.visible_devices_env, kind.ray_assigns_devices) == (
        "HXF",
        "HXF_VISIBLE_DEVICES",
        False,
    )
    assert chip_demands(parsed)[0].total == 2


def test_a_declared_kind_may_not_replace_a_built_in_one() -> None:
    with pytest.raises(CatalogError, match="built in"):
        catalog({"chip": "nvidia"}, chips=[{"name": "nvidia", "ray_resource": "X"}])


def test_chips_claimed_whole_refuse_fractions_but_gpus_may_share() -> None:
    with pytest.raises(CatalogError, match="must be an integer"):
        catalog({"chip": "enflame", "chips_per_replica": 0.5})
    assert (
        catalog({"chip": "nvidia", "chips_per_replica": 0.5}).models[0].deployments[0].chips_per_replica
        == 0.5
    )


def test_capacity_fits_when_every_replica_finds_a_node() -> None:
    parsed = catalog({"chip": "enflame", "chips_per_replica": 2, "replicas": 2})
    assert capacity_problems(chip_demands(parsed), [{"GCU": 2.0}, {"GCU": 2.0}]) == []


def test_a_replica_larger_than_any_node_is_reported_with_the_ray_start_hint() -> None:
    parsed = catalog({"chip": "nvidia", "chips_per_replica": 8})
    (problem,) = capacity_problems(chip_demands(parsed), [{"GPU": 4.0}, {"GPU": 4.0}])
    assert "'m0' needs 8 nvidia chip(s)" in problem
    assert "largest node offers 4" in problem
    assert "--num-gpus" in problem


def test_more_replicas_than_the_cluster_holds_are_reported_in_total() -> None:
    parsed = catalog(
        {"chip": "ascend", "chips_per_replica": 2, "replicas": 2}, {"chip": "ascend", "chips_per_replica": 4}
    )
    (problem,) = capacity_problems(chip_demands(parsed), [{"NPU": 4.0}, {"NPU": 2.0}])
    assert "needs 8 NPU in all" in problem and "offers 6" in problem


def test_a_cluster_without_the_resource_is_reported() -> None:
    parsed = catalog({"chip": "enflame"})
    (problem,) = capacity_problems(chip_demands(parsed), [{"CPU": 2.0}])
    assert "offers 0" in problem and '"GCU": N' in problem


def test_chip_report_lists_models_by_chip_and_healthy_replicas() -> None:
    parsed = catalog({"chip": "enflame", "replicas": 2}, {"chip": "cpu"})
    report = chip_report(parsed, {"m0": "RUNNING"}, {"m0": 1}, {"GCU": {"total": 2.0, "available": 0.0}})
    first = report["models"][0]
    assert (first["chip"], first["ray_resource"], first["replicas"], first["healthy_replicas"]) == (
        "enflame",
        "GCU",
        2,
        1,
    )
    assert report["models"][1]["status"] == "UNKNOWN"
    kinds = {k["chip"]: k for k in report["kinds"]}
    assert kinds["enflame"]["in_cluster"] and not kinds["ascend"]["in_cluster"]


def test_every_deployment_of_a_model_is_a_row_of_the_chip_report_and_a_chip_demand() -> None:
    parsed = parse_catalog(
        {
            "models": [
                {
                    "name": "m",
                    "family": "llama",
                    "context_length": 512,
                    "weights": {"kind": "local", "path": "/models/x"},
                    "deployments": [
                        {"chip": "nvidia", "pool": "own"},
                        {"chip": "ascend", "pool": "rented", "replicas": 2},
                    ],
                }
            ]
        },
        "test.yaml",
    )
    report = chip_report(parsed, {"m@rented": "RUNNING"}, {"m@rented": 2}, {})
    rows = {row["deployment"]: row for row in report["models"]}
    assert set(rows) == {"m", "m@rented"} and rows["m"]["status"] == "UNKNOWN"
    assert (rows["m@rented"]["pool"], rows["m@rented"]["healthy_replicas"]) == ("rented", 2)
    assert {(d.model, d.resource, d.total) for d in chip_demands(parsed)} == {
        ("m", "GPU", 1),
        ("m@rented", "NPU", 2),
    }


def test_a_pool_no_node_declares_is_named_with_the_line_that_declares_it() -> None:
    parsed = catalog({"pool": "own"}, {"pool": "eu-rented"})
    nodes = [{"CPU": 8, "maas_pool_own": 1}]
    problems = pool_problems(parsed, nodes, in_gateway=set())
    assert len(problems) == 1 and "pool 'eu-rented'" in problems[0]
    assert """ray start --resources='{"maas_pool_eu-rented": 1}'""" in problems[0]
    assert pool_problems(parsed, nodes, in_gateway={"m1"}) == []  # a rented API needs no node
