"""`maas deploy render`: the Kubernetes manifests of a catalog (KubeRay RayCluster, gateway, monitoring)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway.catalog.schema import CatalogError, load_catalog
from gateway.kubernetes.options import RenderError, RenderOptions, default_images
from gateway.kubernetes.render import render, write

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
"""The repository's Grafana dashboards (a source checkout or an editable install)."""

T = TypeVar("T")


def pairs(values: list[str], option: str, convert: Callable[[str], T]) -> dict[str, T]:
    """``["nvidia=8", ...]`` -> ``{"nvidia": 8}``; ``RenderError`` names the option on a bad pair."""
    result: dict[str, T] = {}
    for value in values:
        kind, sep, text = value.partition("=")
        if not sep or not kind or not text:
            raise RenderError(f"{option} {value!r}: expected KIND=VALUE")
        try:
            result[kind] = convert(text)
        except ValueError:
            raise RenderError(f"{option} {value!r}: {text!r} is not a valid value") from None
    return result


def options_from_args(args: argparse.Namespace) -> RenderOptions:
    return RenderOptions(
        name=args.name,
        namespace=args.namespace,
        images={**default_images(), **pairs(args.image, "--image", str)},
        gateway_replicas=args.gateway_replicas,
        gateway_max_replicas=args.gateway_max_replicas,
        database_secret=args.database_secret,
        redis_secret=args.redis_secret or None,
        postgres_host=args.postgres_host,
        redis_host=args.redis_host,
        ray_auth_secret=args.ray_auth_secret,
        models_claim=args.models_claim,
        chips_per_node=pairs(args.chips_per_node, "--chips-per-node", int),
        device_resources=pairs(args.device_resource, "--device-resource", str),
        cpus_per_chip=args.cpus_per_chip,
        memory_gib_per_chip=args.memory_gib_per_chip,
        pool_node_label=args.pool_node_label or None,
    )


def read_dashboards(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        raise RenderError(f"--dashboards {folder}: no such folder (the Grafana dashboards to ship)")
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.json"))}


def cmd_deploy_render(args: argparse.Namespace) -> int:
    catalog_path = Path(args.catalog)
    try:
        catalog = load_catalog(catalog_path)
        options = options_from_args(args)
        rendering = render(
            catalog, catalog_path.read_text(encoding="utf-8"), options, read_dashboards(Path(args.dashboards))
        )
    except (CatalogError, RenderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in write(rendering.files, Path(args.out), args.catalog):
        print(f"wrote {path}")
    for group in rendering.groups:
        chips = f" x {group.chips_per_pod} {group.device_resource}" if group.device_resource else ""
        models = ", ".join(dict.fromkeys(d.model for d in group.demands))
        print(f"worker group {group.name}: {group.pods} pod(s){chips} ({models})")
    print(f"nothing was applied; review, then: kubectl apply -f {args.out}")
    return 0


def add_deploy_commands(sub: Any) -> None:
    deploy = sub.add_parser("deploy", help="deployment manifests rendered from a catalog").add_subparsers(
        dest="deploy_command", required=True
    )
    r = deploy.add_parser("render", help="render the Kubernetes manifests (KubeRay RayCluster, gateway)")
    r.add_argument("--catalog", default="models.yaml", help="the model catalog to deploy")
    r.add_argument("--out", required=True, help="folder the YAML files are written to")
    r.add_argument("--name", default="maas", help="prefix of every object's name")
    r.add_argument("--namespace", default="maas")
    r.add_argument(
        "--image", action="append", default=[], metavar="KIND=IMAGE", help="container image of a chip kind"
    )
    r.add_argument(
        "--chips-per-node", action="append", default=[], metavar="KIND=N", help="chips per worker node"
    )
    r.add_argument(
        "--device-resource",
        action="append",
        default=[],
        metavar="KIND=RESOURCE",
        help="device-plugin resource of a chip kind (e.g. ascend=huawei.com/Ascend310P)",
    )
    r.add_argument(
        "--gateway-replicas", type=int, default=1, help="attached gateways at least (the autoscaler's floor)"
    )
    r.add_argument(
        "--gateway-max-replicas", type=int, default=4, help="attached gateways at most (autoscaler's ceiling)"
    )
    r.add_argument("--database-secret", default="maas-database", help="Secret with key url: PostgreSQL")
    r.add_argument("--redis-secret", default="maas-redis", help="Secret with key url: Redis ('' for none)")
    r.add_argument("--postgres-host", default=None, help="external PostgreSQL host (an ExternalName Service)")
    r.add_argument("--redis-host", default=None, help="external Redis host (an ExternalName Service)")
    r.add_argument("--ray-auth-secret", default="maas-ray-auth", help="Secret with key auth_token: Ray's")
    r.add_argument("--models-claim", default="maas-models", help="ReadWriteMany claim mounted at /models")
    r.add_argument("--cpus-per-chip", type=int, default=8, help="CPUs of a worker pod per chip")
    r.add_argument("--memory-gib-per-chip", type=int, default=64, help="memory of a worker pod per chip")
    r.add_argument(
        "--pool-node-label", default="maas/pool", help="node label naming a node's pool ('' for none)"
    )
    r.add_argument("--dashboards", default=str(DASHBOARDS), help="folder of Grafana dashboard JSON files")
    r.set_defaults(func=cmd_deploy_render)
