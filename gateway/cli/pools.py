"""``maas pools``: each pool's and deployment's load, tokens and money, from ``GET /admin/pools``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gateway.cli.chips import table


def _money(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def format_pools(body: dict[str, Any]) -> str:
    """The ``GET /admin/pools`` body as two tables: pools, then deployments."""
    share = body.get("own_token_share")
    head = f"window {body['window_s']:.0f}s; own capacity served " + (
        "no tokens yet" if share is None else f"{share:.1%} of the tokens"
    )
    columns = [
        "CAPACITY",
        "IN FLIGHT",
        "VACANCY",
        "TOKENS",
        "REVENUE",
        "COST (MARGINAL)",
        "MARGIN (AMORTISED)",
    ]
    pools = [["POOL", "BILLING", *columns]]
    for p in body["pools"]:
        pools.append([p["pool"], p["billing"], *_figures(p)])
    deployments = [["DEPLOYMENT", "POOL", "HEALTHY", *columns]]
    for d in body["deployments"]:
        deployments.append(
            [d["deployment"], d["pool"], f"{d['healthy_replicas']}/{d['replicas']}", *_figures(d)]
        )
    events = "; ".join(
        f"{model}: {e['spill']} spill(s), {e['drain_back']} drain-back(s)"
        for model, e in body["placement_events"].items()
    )
    return "\n\n".join([head, table(pools), table(deployments), events or "no spill yet"])


def _figures(row: dict[str, Any]) -> list[str]:
    return [
        str(row["capacity"]),
        str(row["in_flight"]),
        f"{row['vacancy']:.0%}",
        str(row["prompt_tokens"] + row["completion_tokens"]),
        _money(row["revenue"]),
        _money(row["cost_marginal"]),
        _money(row["margin_amortised"]),
    ]


def cmd_pools(args: argparse.Namespace) -> int:
    from gateway.cli.admin_client import AdminCallFailed, admin_call, admin_key

    path = "/admin/pools" + (f"?start={args.start}" if args.start else "")
    try:
        body = admin_call("GET", args.url, path, admin_key(args.key))
    except AdminCallFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2) if args.json else format_pools(body))
    return 0


def add_pool_commands(sub: Any) -> None:
    pools = sub.add_parser("pools", help="capacity pools: load, vacancy, tokens, revenue, cost and margin")
    pools.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway's base URL")
    pools.add_argument("--key", default=None, help="operator key (default: $MAAS_ADMIN_KEY)")
    pools.add_argument(
        "--start", default=None, help="window start (unix seconds or ISO 8601; default: start)"
    )
    pools.add_argument("--json", action="store_true", help="print the JSON body")
    pools.set_defaults(func=cmd_pools)
