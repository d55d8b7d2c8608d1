"""`maas usage`: usage and cost from the ledger, as a table or CSV (the same data as GET /admin/usage)."""

from __future__ import annotations

import argparse
import sys

from gateway.cli.settings import Settings


def cmd_usage(args: argparse.Namespace) -> int:
    """Print usage from the ledger (the same data as GET /admin/usage)."""
    import csv

    from gateway.billing.ledger import UsageQuery, open_ledger
    from gateway.billing.ledger.records import GROUP_COLUMNS, ROW_COLUMNS, TIME_GROUPS

    groups = tuple(g.strip() for g in args.group_by.split(",") if g.strip())
    allowed = (*GROUP_COLUMNS, *TIME_GROUPS)
    if not groups or any(g not in allowed for g in groups):
        print(f"error: --group-by takes a comma-separated subset of: {', '.join(allowed)}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    ledger = open_ledger(settings.database_url, str(settings.database_path))
    try:
        rows = ledger.store.query(
            UsageQuery(since=args.since, until=args.until, group_by=groups, tenant=args.tenant)
        )
    finally:
        ledger.close()
    columns = [*groups, *ROW_COLUMNS]
    table = [[f"{v:.9f}" if k == "cost" else v for k, v in r.as_dict().items()] for r in rows]
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(table)
        return 0
    widths = [max(len(str(x)) for x in [c, *(row[i] for row in table)]) for i, c in enumerate(columns)]
    for line in [columns, *table]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    return 0


def add_usage_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    usage = sub.add_parser("usage", help="usage and cost from the ledger")
    usage.add_argument("--group-by", default="model", help="model,tenant,key,chip,pool,day,hour,minute")
    usage.add_argument("--since", type=float, default=None, help="unix seconds")
    usage.add_argument("--until", type=float, default=None, help="unix seconds")
    usage.add_argument("--tenant", default=None, help="only this tenant")
    usage.add_argument("--csv", action="store_true", help="CSV instead of a table")
    usage.set_defaults(func=cmd_usage)
