"""`maas catalog check` (validate a catalog file) and `maas catalog apply` (send it to a running gateway)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.catalog.schema import CatalogError, load_catalog


def cmd_catalog_check(args: argparse.Namespace) -> int:
    try:
        catalog = load_catalog(Path(args.path))
    except CatalogError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{args.path}: OK, {len(catalog.models)} model(s)")
    return 0


def cmd_catalog_apply(args: argparse.Namespace) -> int:
    """Send a catalog to a running gateway (POST /admin/catalog) and print what changed."""
    from gateway.cli.admin_client import AdminCallFailed, admin_call, admin_key

    path = Path(args.path)
    try:
        load_catalog(path)  # the same checks the gateway runs, with the file named in errors
    except CatalogError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        key = admin_key(args.key)
    except AdminCallFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        body = admin_call(
            "POST",
            args.url,
            "/admin/catalog",
            key,
            content=path.read_bytes(),
            content_type="application/yaml",
            timeout_s=args.timeout,
        )
    except AdminCallFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for field in ("added", "removed", "redeployed", "updated", "unchanged"):
        print(f"{field}: {', '.join(body[field]) or '-'}")
    return 0


def add_catalog_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    catalog = sub.add_parser("catalog", help="model catalog tools").add_subparsers(
        dest="catalog_command", required=True
    )
    check = catalog.add_parser("check", help="validate a catalog without loading weights")
    check.add_argument("path")
    check.set_defaults(func=cmd_catalog_check)
    apply = catalog.add_parser("apply", help="apply a catalog to a running gateway without a restart")
    apply.add_argument("path")
    apply.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway's base URL")
    apply.add_argument("--key", default=None, help="operator key (default: $MAAS_ADMIN_KEY)")
    apply.add_argument("--timeout", type=float, default=900, help="seconds to wait for new engines")
    apply.set_defaults(func=cmd_catalog_apply)
