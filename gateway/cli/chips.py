"""`maas chips` (what runs on which chips in a running gateway) and `maas node resources` (this node)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from gateway.catalog.pools import POOL_NAME
from gateway.catalog.schema import CatalogError, load_catalog


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def format_chips(body: dict[str, Any]) -> str:
    """The ``GET /admin/chips`` body as two tables: models by chip, then the cluster's chips."""
    rows = [
        ["MODEL", "DEPLOYMENT", "CHIP", "PER REPLICA", "REPLICAS", "HEALTHY", "POOL", "BACKEND", "STATUS"]
    ]
    for m in body["models"]:
        rows.append(
            [
                m["model"],
                m.get("deployment", m["model"]),
                m["chip"],
                f"{m['chips_per_replica']:g}",
                str(m["replicas"]),
                str(m["healthy_replicas"]),
                m["pool"],
                m["backend"],
                m["status"],
            ]
        )
    cluster = [["RAY RESOURCE", "TOTAL", "AVAILABLE"]]
    for name, amounts in body["cluster"].items():
        cluster.append([name, f"{amounts['total']:g}", f"{amounts['available']:g}"])
    if len(cluster) == 1:
        return table(rows) + "\n\nno accelerator resources in the cluster (CPU only)"
    return table(rows) + "\n\n" + table(cluster)


def cmd_chips(args: argparse.Namespace) -> int:
    from gateway.cli.admin_client import AdminCallFailed, admin_call, admin_key

    try:
        body = admin_call("GET", args.url, "/admin/chips", admin_key(args.key))
    except AdminCallFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2) if args.json else format_chips(body))
    return 0


def cmd_node_resources(args: argparse.Namespace) -> int:
    from backends.chips import BUILTIN_CHIPS
    from gateway.cli.node_resources import detect_node_chips, format_report

    chips = dict(BUILTIN_CHIPS)
    if args.config and Path(args.config).is_file():
        try:
            chips = load_catalog(Path(args.config)).chip_kinds()  # the catalog's own chip kinds too
        except CatalogError as exc:
            print(exc, file=sys.stderr)
            return 2
    if args.pool is not None and not re.match(POOL_NAME, args.pool):
        print(f"error: --pool {args.pool!r} is not a pool name (lower case, digits, dashes)", file=sys.stderr)
        return 2
    detected = detect_node_chips(chips)
    print(format_report(detected, args.num_cpus or os.cpu_count() or 1, args.head, args.pool))
    return 0


def add_chip_commands(sub: Any) -> None:
    chips = sub.add_parser("chips", help="which models run on which chips, and the cluster's chips")
    chips.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway's base URL")
    chips.add_argument("--key", default=None, help="operator key (default: $MAAS_ADMIN_KEY)")
    chips.add_argument("--json", action="store_true", help="print the JSON body")
    chips.set_defaults(func=cmd_chips)

    node = sub.add_parser("node", help="this machine as a Ray node").add_subparsers(
        dest="node_command", required=True
    )
    resources = node.add_parser(
        "resources", help="the chips this node offers and the `ray start` line that declares them"
    )
    resources.add_argument("--head", default=None, help="head node address (host:port) to join")
    resources.add_argument("--num-cpus", type=int, default=None, help="CPUs to declare (default: all)")
    resources.add_argument(
        "--pool", default=None, help="the pool this node serves: declares its Ray resource (maas_pool_<name>)"
    )
    resources.add_argument(
        "--config", default="models.yaml", help="catalog whose `chips` kinds to look for too"
    )
    resources.set_defaults(func=cmd_node_resources)
