"""Worker groups per chip kind and pool, sized from the catalog's replicas; none where no node is needed."""

from __future__ import annotations

import copy
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog.schema import CatalogError, load_catalog
from gateway.cli.node_resources import DetectedChips, ray_start_line
from gateway.kubernetes.options import RenderError, RenderOptions, default_images
from gateway.kubernetes.ray_cluster import ray_start_params
from gateway.kubernetes.worker_groups import pack, plan_worker_groups

EXAMPLE = Path("deploy/catalogs/production-example.yaml")
IMAGES = {**default_images(), "enflame": "registry.example/maas-gateway:enflame"}

API_POOL = {
    "name": "api",
    "kind": "managed",
    "per_token": {"input_per_million": "0.1", "output_per_million": "0.4"},
}
UPSTREAM = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}


def model(name: str, *deployments: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "family": "qwen",
        "context_length": 4096,
        "weights": {"kind": "local", "path": f"/models/{name}"},
        "deployments": list(deployments),
    }


def test_the_production_example_gets_one_group_per_chip_kind_and_pool(repo_root: Path) -> None:
    catalog = load_catalog(repo_root / EXAMPLE)

    groups = {g.name: g for g in plan_worker_groups(catalog, RenderOptions(images=IMAGES))}

    # (pods, chips per pod, device resource); Hexaflake runs in the gateway (an HTTP client, no chips).
    assert {name: (g.pods, g.chips_per_pod, g.device_resource) for name, g in groups.items()} == {
        # 2x8 + 1x8 (DeepSeek) and 13 single-GPU replicas: 3 full nodes, then 8 + 5 on two more.
        "nvidia-own": (5, 8, "nvidia.com/gpu"),
        "nvidia-managed": (2, 8, "nvidia.com/gpu"),  # DeepSeek-R1 (8) and Yi (1) do not share a node
        "ascend-own": (1, 6, "huawei.com/Ascend910"),  # 4 + 2 replicas of one NPU fit one node
        "ascend-managed": (1, 2, "huawei.com/Ascend910"),
        "enflame-own": (1, 2, "enflame.com/gcu"),
        "cpu-own": (2, 0, None),  # one pod per CPU replica
    }
    assert [(d.model, d.deployment, d.replicas) for d in groups["ascend-managed"].demands] == [
        ("qwen2.5-7b-instruct", 1, 2)
    ]
    assert groups["nvidia-own"].ray_resources == {"maas_pool_own": 1}  # GPUs go to --num-gpus
    assert groups["nvidia-own"].num_gpus == 8
    assert groups["ascend-own"].ray_resources == {"NPU": 6, "maas_pool_own": 1}
    assert groups["enflame-own"].ray_resources == {"GCU": 2, "maas_pool_own": 1}
    assert groups["cpu-own"].ray_resources == {"maas_pool_own": 1}


def test_ray_start_params_declare_what_maas_node_resources_prints_for_such_a_node(repo_root: Path) -> None:
    catalog = load_catalog(repo_root / EXAMPLE)

    for group in plan_worker_groups(catalog, RenderOptions(images=IMAGES)):
        detected = []
        if group.chip.ray_resource is not None:
            detected = [DetectedChips(group.chip.name, group.chip.ray_resource, group.chips_per_pod, (), "")]
        line = ray_start_line(detected, num_cpus=16, head_address="head", pool=group.pool)
        flags = dict(word.removeprefix("--").split("=", 1) for word in shlex.split(line)[3:])
        params = {k: shlex.split(v)[0] for k, v in ray_start_params(group, cpus=16).items()}
        assert params == flags, group.name


def test_per_token_pools_and_in_gateway_backends_get_no_worker_group(
    write_catalog: Callable[[object], Path],
) -> None:
    catalog = load_catalog(
        write_catalog(
            {
                "pools": [{"name": "own", "kind": "owned"}, API_POOL],
                "models": [
                    model(
                        "m",
                        {"chip": "nvidia", "pool": "own", "chips_per_replica": 1},
                        {"backend": "openai_upstream", "pool": "api", "engine": UPSTREAM},
                        # An HTTP client asking for no chips runs in the gateway, whatever its pool.
                        {
                            "backend": "openai_upstream",
                            "pool": "own",
                            "chips_per_replica": 0,
                            "engine": UPSTREAM,
                        },
                    ),
                    # A vLLM replica in a per-token pool has no node to run on either.
                    model("n", {"chip": "nvidia", "pool": "api", "chips_per_replica": 1}),
                ],
            }
        )
    )

    assert [g.name for g in plan_worker_groups(catalog, RenderOptions())] == ["nvidia-own"]


def test_an_upstream_client_that_asks_for_chips_is_a_replica_and_gets_a_group(
    write_catalog: Callable[[object], Path],
) -> None:
    upstream = {"backend": "openai_upstream", "chip": "nvidia", "chips_per_replica": 1, "engine": UPSTREAM}
    catalog = load_catalog(write_catalog({"models": [model("m", upstream)]}))

    assert [(g.name, g.pods, g.chips_per_pod) for g in plan_worker_groups(catalog, RenderOptions())] == [
        ("nvidia-own", 1, 1)
    ]


def test_first_fit_decreasing_never_splits_a_replica_across_nodes() -> None:
    assert pack([8, 1, 1, 8, 4, 4], capacity=8) == [8, 8, 8, 2]
    assert pack([0.5, 0.5, 0.5], capacity=8) == [1.5]
    assert pack([3, 3, 3], capacity=8) == [6, 3]


def test_chips_per_node_decides_the_pod_size(write_catalog: Callable[[object], Path]) -> None:
    catalog = load_catalog(
        write_catalog({"models": [model("m", {"chip": "ascend", "chips_per_replica": 2, "replicas": 5})]})
    )

    groups = plan_worker_groups(catalog, RenderOptions(chips_per_node={"ascend": 4}))

    assert [(g.name, g.pods, g.chips_per_pod) for g in groups] == [("ascend-own", 3, 4)]
    override = RenderOptions(device_resources={"ascend": "huawei.com/Ascend310P"})
    assert plan_worker_groups(catalog, override)[0].device_resource == "huawei.com/Ascend310P"


CUSTOM_CHIP = {"name": "vendorx", "ray_resource": "VX", "visible_devices_env": "VX_VISIBLE_DEVICES"}


def test_a_catalog_chip_kind_names_its_device_plugin_resource(
    write_catalog: Callable[[object], Path],
) -> None:
    chip = {**CUSTOM_CHIP, "device_plugin_resource": "vendorx.com/card"}
    catalog = load_catalog(
        write_catalog({"chips": [chip], "models": [model("m", {"chip": "vendorx", "chips_per_replica": 2})]})
    )

    (group,) = plan_worker_groups(catalog, RenderOptions(images={"cpu": "c", "vendorx": "x"}))

    assert (group.name, group.device_resource, group.image) == ("vendorx-own", "vendorx.com/card", "x")
    assert group.ray_resources == {"VX": 2, "maas_pool_own": 1}


def test_a_device_plugin_resource_that_kubernetes_would_refuse_is_a_catalog_error(
    write_catalog: Callable[[object], Path],
) -> None:
    chip = {**CUSTOM_CHIP, "device_plugin_resource": "no slash"}
    with pytest.raises(CatalogError, match=r"chips\[0\]\.device_plugin_resource"):
        load_catalog(write_catalog({"chips": [chip], "models": [model("m", {"chip": "vendorx"})]}))


BAD_RENDERS = [
    (
        {"models": [model("m", {"chip": "nvidia", "chips_per_replica": 16})]},
        RenderOptions(),
        "model 'm' needs 16 nvidia chips per replica but the nodes of worker group nvidia-own carry 8; "
        "pass --chips-per-node nvidia=16",
    ),
    (
        {"models": [model("m", {"chip": "enflame", "chips_per_replica": 1})]},
        RenderOptions(),
        "no container image for chip kind 'enflame' (worker group enflame-own: m); "
        "pass --image enflame=REGISTRY/IMAGE:TAG",
    ),
    (
        {"chips": [CUSTOM_CHIP], "models": [model("m", {"chip": "vendorx", "chips_per_replica": 1})]},
        RenderOptions(images={"cpu": "c", "vendorx": "x"}),
        "chip kind 'vendorx' has no known Kubernetes device-plugin resource (worker group vendorx-own); "
        "declare device_plugin_resource under `chips:` in the catalog or pass "
        "--device-resource vendorx=VENDOR.COM/RESOURCE",
    ),
    (
        {"models": [model("m", {"chip": "cpu"})]},
        RenderOptions(chips_per_node={"nvdia": 8}),
        "--chips-per-node names chip kind(s) nvdia that the catalog does not know",
    ),
]


@pytest.mark.parametrize(("catalog", "options", "message"), BAD_RENDERS)
def test_bad_render_input_is_refused_with_what_to_change(
    write_catalog: Callable[[object], Path], catalog: dict[str, Any], options: RenderOptions, message: str
) -> None:
    loaded = load_catalog(write_catalog(copy.deepcopy(catalog)))

    with pytest.raises(RenderError) as caught:
        plan_worker_groups(loaded, options)

    assert message in str(caught.value)
