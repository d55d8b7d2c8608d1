"""Every rendered manifest validates against the Kubernetes and KubeRay schemas (offline: no cluster runs
here), and says what the gateway really needs: flags `maas serve` has, probes on /health, Secrets."""

from __future__ import annotations

import argparse
import copy
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.catalog.schema import load_catalog, parse_catalog
from gateway.cli.main import build_parser
from gateway.kubernetes.options import RAY_VERSION, RenderError, RenderOptions, default_images
from gateway.kubernetes.render import render, to_yaml
from tests.gateway.kubernetes.schemas import errors_of, ray_cluster_validator

EXAMPLE = Path("deploy/catalogs/production-example.yaml")
DASHBOARDS = Path("deploy/grafana/dashboards")
OPTIONS = RenderOptions(
    images={**default_images(), "enflame": "registry.example/maas-gateway:enflame"},
    postgres_host="postgres.example.internal",
    redis_host="redis.example.internal",
)


def dashboards(repo_root: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((repo_root / DASHBOARDS).glob("*.json"))}


@pytest.fixture
def manifests(repo_root: Path) -> list[dict[str, Any]]:
    text = (repo_root / EXAMPLE).read_text()
    files = render(load_catalog(repo_root / EXAMPLE), text, OPTIONS, dashboards(repo_root)).files
    # What is checked is what is written: each file read back from its YAML.
    return [doc for file in files for doc in yaml.safe_load_all(to_yaml(file.manifests, "h")) if doc]


def by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def test_every_manifest_validates_against_the_kubernetes_and_kuberay_schemas(
    manifests: list[dict[str, Any]],
) -> None:
    assert sorted(m["kind"] for m in manifests) == [
        "ConfigMap",
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Namespace",
        "RayCluster",
        "Service",
        "Service",
        "Service",
        "Service",
        "StatefulSet",
    ]
    for manifest in manifests:
        assert errors_of(manifest) == [], manifest["metadata"]["name"]


def test_the_validators_refuse_what_a_cluster_would(manifests: list[dict[str, Any]]) -> None:
    (cluster,) = by_kind(manifests, "RayCluster")
    typo = copy.deepcopy(cluster)
    typo["spec"]["workerGroupSpecs"][0]["replica"] = 2  # not a field: pruned by the API server, refused here
    wrong_type = copy.deepcopy(cluster)
    wrong_type["spec"]["workerGroupSpecs"][0]["rayStartParams"]["num-cpus"] = 8  # must be a string
    in_container = copy.deepcopy(cluster)
    in_container["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"][0][
        "containerPort"
    ] = "gcs"
    outside_range = copy.deepcopy(cluster)
    outside_range["spec"]["workerGroupSpecs"][0]["maxReplicas"] = 0
    (deployment,) = by_kind(manifests, "Deployment")
    bad_probe = copy.deepcopy(deployment)
    bad_probe["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/health"

    for broken in (typo, wrong_type, in_container, outside_range, bad_probe):
        assert errors_of(broken), broken["kind"]


def test_the_vendored_crd_schema_is_kuberays_raycluster_v1() -> None:
    properties = ray_cluster_validator().schema["properties"]["spec"]["properties"]
    assert {"headGroupSpec", "workerGroupSpecs", "rayVersion", "authOptions"} <= set(properties)


def test_the_ray_cluster_has_a_head_that_takes_no_replica_and_runs_the_pinned_ray(
    manifests: list[dict[str, Any]],
) -> None:
    (cluster,) = by_kind(manifests, "RayCluster")
    spec = cluster["spec"]
    assert spec["rayVersion"] == RAY_VERSION
    assert spec["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0"}
    assert spec["authOptions"] == {"mode": "token", "secretName": "maas-ray-auth"}
    nvidia = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "nvidia-own")
    container = nvidia["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert container["image"] == "maas-gateway:0.1.0-cuda"
    assert nvidia["rayStartParams"] == {
        "num-cpus": "64",
        "num-gpus": "8",
        "resources": """'{"maas_pool_own": 1}'""",
    }
    assert nvidia["template"]["spec"]["nodeSelector"] == {"maas/pool": "own"}
    ascend = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "ascend-managed")
    assert ascend["template"]["spec"]["containers"][0]["resources"]["limits"]["huawei.com/Ascend910"] == 2
    assert json.loads(shlex.split(ascend["rayStartParams"]["resources"])[0]) == {
        "NPU": 2,
        "maas_pool_managed": 1,
    }


def serve_args(workload: dict[str, Any]) -> argparse.Namespace:
    """The `maas serve` line of a gateway pod's script, parsed by the real command line (exits on an
    unknown flag)."""
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    script = container["command"][2]
    serve_line = next(line for line in script.replace("\\\n", " ").splitlines() if "maas serve" in line)
    words = shlex.split(serve_line.replace('"$RAY_HEAD"', "head:6379"))
    return build_parser().parse_args(words[words.index("maas") + 1 :])


def test_the_gateway_joins_the_cluster_and_runs_maas_serve_with_flags_it_has(
    manifests: list[dict[str, Any]],
) -> None:
    (deployment,) = by_kind(manifests, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    script = container["command"][2]
    args = serve_args(deployment)
    assert (args.config, args.host, args.port, args.ray_address, args.attach) == (
        "/etc/maas/models.yaml",
        "0.0.0.0",
        8000,
        "head:6379",
        False,
    )
    assert 'ray start --address="$RAY_HEAD" --num-cpus=0 --num-gpus=0' in script
    env = {e["name"]: e for e in container["env"]}
    assert env["RAY_HEAD"]["value"] == "maas-ray-head-svc.maas.svc.cluster.local:6379"
    assert env["MAAS_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "maas-database", "key": "url"}
    assert env["MAAS_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "maas-redis", "key": "url"}
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "maas-ray-auth",
        "key": "auth_token",
    }
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert deployment["spec"]["strategy"] == {"type": "Recreate"} and deployment["spec"]["replicas"] == 1


def test_attached_gateways_serve_what_the_deploying_one_deployed_behind_the_same_service(
    manifests: list[dict[str, Any]],
) -> None:
    (deployment,) = by_kind(manifests, "Deployment")
    (attached,) = by_kind(manifests, "StatefulSet")
    args = serve_args(attached)
    assert (args.attach, args.config, args.ray_address) == (True, None, "head:6379")
    assert attached["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "home"  # each its own spool
    # The two controllers' selectors pick apart; the Service picks both kinds of pod.
    own = deployment["spec"]["selector"]["matchLabels"]
    theirs = attached["spec"]["selector"]["matchLabels"]
    assert own != theirs and own.keys() == theirs.keys()
    services = {m["metadata"]["name"]: m["spec"] for m in by_kind(manifests, "Service")}
    shared = services["maas-gateway"]["selector"]
    for workload in (deployment, attached):
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert shared.items() <= pod_labels.items()
    assert services["maas-gateway-attached"]["clusterIP"] == "None"
    assert attached["spec"]["serviceName"] == "maas-gateway-attached"


def test_the_catalog_and_the_dashboards_ship_as_they_are(
    manifests: list[dict[str, Any]], repo_root: Path
) -> None:
    maps = {m["metadata"]["name"]: m for m in by_kind(manifests, "ConfigMap")}
    catalog_text = maps["maas-catalog"]["data"]["models.yaml"]
    assert catalog_text == (repo_root / EXAMPLE).read_text()
    assert parse_catalog(yaml.safe_load(catalog_text), "configmap") == load_catalog(repo_root / EXAMPLE)
    board = maps["maas-grafana-dashboards"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["data"] == dashboards(repo_root)
    scrape = yaml.safe_load(maps["maas-prometheus-scrape"]["data"]["scrape-configs.yaml"])
    assert scrape["scrape_configs"][0]["kubernetes_sd_configs"] == [
        {"role": "pod", "namespaces": {"names": ["maas"]}}
    ]


def test_the_autoscaler_and_the_external_stores(manifests: list[dict[str, Any]]) -> None:
    (hpa,) = by_kind(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "maas-gateway-attached",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    stores = {m["metadata"]["name"]: m["spec"] for m in by_kind(manifests, "Service")}
    assert stores["maas-postgres"] == {"type": "ExternalName", "externalName": "postgres.example.internal"}
    assert stores["maas-redis"] == {"type": "ExternalName", "externalName": "redis.example.internal"}


def test_without_redis_or_store_hosts_nothing_of_them_is_rendered(repo_root: Path) -> None:
    options = RenderOptions(images=OPTIONS.images, redis_secret=None)
    manifests = render(load_catalog(repo_root / EXAMPLE), "models: []", options, {}).manifests
    assert [m["metadata"]["name"] for m in by_kind(manifests, "Service")] == [
        "maas-gateway-attached",
        "maas-gateway",
    ]
    (deployment,) = by_kind(manifests, "Deployment")
    assert "MAAS_REDIS_URL" not in {
        e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (RenderOptions(gateway_replicas=3, gateway_max_replicas=2), "at most the autoscaler's maximum 2"),
        (RenderOptions(name="MaaS"), "name 'MaaS' must be a DNS label"),
        (RenderOptions(gateway_replicas=0), "gateway replicas 0 must be at least 1"),
        (RenderOptions(images={"nvidia": "n"}), "no image for chip kind 'cpu'"),
        (RenderOptions(cpus_per_chip=0), "cpus per chip must be at least 1"),
    ],
)
def test_bad_options_are_refused_clearly(repo_root: Path, options: RenderOptions, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(load_catalog(repo_root / EXAMPLE), "", options, {})


def ray_start_args(words: list[str]) -> dict[str, Any]:
    """``ray start`` options parsed by Ray's own command line (raises on an option it does not have)."""
    from ray.scripts.scripts import start

    return dict(start.make_context("start", words).params)


def test_every_ray_start_line_is_one_ray_accepts(manifests: list[dict[str, Any]]) -> None:
    (cluster,) = by_kind(manifests, "RayCluster")
    for group in [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]:
        # KubeRay passes each parameter to `ray start` as --key=value through a shell.
        words = shlex.split(" ".join(f"--{k}={v}" for k, v in group["rayStartParams"].items()))
        params = ray_start_args(words)
        assert params["num_cpus"] == int(group["rayStartParams"]["num-cpus"])
        if "resources" in group["rayStartParams"]:
            assert set(json.loads(params["resources"])) >= {
                f"maas_pool_{group['template']['metadata']['labels']['maas/pool']}"
            }
    (deployment,) = by_kind(manifests, "Deployment")
    script = deployment["spec"]["template"]["spec"]["containers"][0]["command"][2]
    ray_line = next(line for line in script.splitlines() if line.startswith("ray start"))
    params = ray_start_args(shlex.split(ray_line.replace('"$RAY_HEAD"', "head:6379"))[2:])
    assert (params["num_cpus"], params["num_gpus"], params["resources"]) == (0, 0, "{}")
