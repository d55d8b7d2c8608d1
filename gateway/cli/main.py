"""``maas``: run the gateway and manage tenants, keys, catalogs and chips; one module per command group.

maas serve [--config models.yaml] [--host 127.0.0.1] [--port 8000]
maas keys create --tenant NAME
maas catalog check PATH
maas deploy render --catalog models.yaml --out deploy/kubernetes
"""

from __future__ import annotations

import argparse
import logging
import sys

from gateway.cli.accounts import add_account_commands
from gateway.cli.catalog import add_catalog_commands
from gateway.cli.chips import add_chip_commands
from gateway.cli.deploy import add_deploy_commands
from gateway.cli.logs import LOG_FORMAT
from gateway.cli.pools import add_pool_commands
from gateway.cli.serve import add_serve_command
from gateway.cli.usage import add_usage_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maas", description="MaaS inference gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_command(sub)
    add_account_commands(sub)
    add_usage_command(sub)
    add_catalog_commands(sub)
    add_chip_commands(sub)
    add_pool_commands(sub)
    add_deploy_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format=LOG_FORMAT,
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
