"""`maas tenants` and `maas keys`: tenants, their limits and budgets, and API keys, in the local key store."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.cli.settings import Settings
from gateway.cli.stores import open_tenancy
from gateway.tenancy.keystore import Budget, KeyStore, RateLimits


def _open_keystore() -> KeyStore:
    """The gateways' own store: PostgreSQL when ``MAAS_DATABASE_URL`` is set, else SQLite in MAAS_HOME."""
    settings = Settings.from_env()
    settings.ensure_dirs()
    return open_tenancy(settings).keystore


def _audit(action: str, target: str, detail: dict[str, Any]) -> None:
    """The local command's actions go in the same audit log as the admin routes', as ``cli:<user>``."""
    tenancy = open_tenancy(Settings.from_env())
    try:
        tenancy.audit.record(f"cli:{getpass.getuser()}", None, action, target, detail)
    finally:
        tenancy.close()


def _pools(args: argparse.Namespace) -> tuple[str, ...] | None:
    if args.pools is None:
        return None
    return tuple(p.strip() for p in args.pools.split(",") if p.strip())


def _limits(args: argparse.Namespace) -> RateLimits:
    return RateLimits(rpm=args.rpm, tpm=args.tpm)


def cmd_tenants_create(args: argparse.Namespace) -> int:
    budget = None
    if args.budget_tokens is not None or args.budget is not None:
        nanos = None if args.budget is None else int(Decimal(args.budget) * 1_000_000_000)
        budget = Budget(period=args.period, tokens=args.budget_tokens, nanos=nanos)
    store = _open_keystore()
    try:
        store.set_tenant(args.name, limits=_limits(args), budget=budget, pools=_pools(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    detail = {
        "rpm": args.rpm,
        "tpm": args.tpm,
        "budget": args.budget,
        "budget_tokens": args.budget_tokens,
        "pools": args.pools,
    }
    _audit("tenant.saved", args.name, {**detail, "period": args.period})
    print(f"Tenant {args.name!r} saved.")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    store = _open_keystore()
    try:
        revoked = store.revoke_key(args.key_id)
    finally:
        store.close()
    if not revoked:
        print(f"error: no active key {args.key_id!r}", file=sys.stderr)
        return 1
    _audit("key.revoked", args.key_id, {})
    print(f"Revoked {args.key_id}.")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    if args.tenant is None:
        if not args.admin:
            print("error: --tenant NAME is required (or --admin for an operator key)", file=sys.stderr)
            return 2
        args.tenant = "operator"
    expires_at = None
    if args.expires is not None:
        expires_at = datetime.fromisoformat(args.expires).timestamp()
    models = tuple(m.strip() for m in args.models.split(",") if m.strip()) if args.models else None
    store = _open_keystore()
    try:
        created = store.create_key(
            args.tenant,
            admin=args.admin,
            limits=_limits(args),
            expires_at=expires_at,
            models=models,
            pools=_pools(args),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    detail = {
        "key_id": created.key_id,
        "admin": args.admin,
        "models": models,
        "pools": args.pools,
        "expires_at": args.expires,
    }
    _audit("key.created", created.tenant, {**detail, "rpm": args.rpm, "tpm": args.tpm})
    kind = "operator (admin) key" if args.admin else "key"
    print(f"Created {kind} {created.key_id} for tenant {created.tenant!r}. It is shown only once:")
    print(created.secret)
    return 0


def _limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpm", type=int, default=None, help="requests per minute")
    parser.add_argument("--tpm", type=int, default=None, help="tokens per minute")
    parser.add_argument(
        "--pools",
        default=None,
        help="comma-separated capacity pools its requests may be served from (default: any)",
    )


def add_account_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create an API key for a tenant")
    create.add_argument("--tenant", default=None, help="tenant the key bills to")
    create.add_argument("--admin", action="store_true", help="an operator key for the /admin routes")
    create.add_argument("--expires", default=None, help="ISO 8601 time after which the key stops working")
    create.add_argument("--models", default=None, help="comma-separated models this key may call")
    _limit_options(create)
    create.set_defaults(func=cmd_keys_create)
    revoke = keys.add_parser("revoke", help="revoke a key by its id (key_...)")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=cmd_keys_revoke)

    tenants = sub.add_parser("tenants", help="manage tenants").add_subparsers(
        dest="tenants_command", required=True
    )
    tenant = tenants.add_parser("create", help="create a tenant or change its limits and budget")
    tenant.add_argument("name")
    _limit_options(tenant)
    tenant.add_argument("--budget-tokens", type=int, default=None, help="tokens per period")
    tenant.add_argument("--budget", default=None, help="money per period, in the models' currency")
    tenant.add_argument("--period", choices=["day", "month"], default="month")
    tenant.set_defaults(func=cmd_tenants_create)
