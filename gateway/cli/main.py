"""``maas``: run the gateway and manage keys.

maas serve [--config models.yaml] [--host 127.0.0.1] [--port 8000]
maas keys create --tenant NAME
maas catalog check PATH
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from gateway.catalog.schema import CatalogError, load_catalog
from gateway.cli.chips import add_chip_commands
from gateway.cli.settings import Settings
from gateway.tenancy.keystore import Budget, KeyStore, RateLimits

if TYPE_CHECKING:
    import uvicorn

    from gateway.serving.serve_runtime import ServeRuntime

logger = logging.getLogger("maas")


def _progress(message: str) -> None:
    print(f"[maas] {message}", file=sys.stderr, flush=True)


def _freeze_startup_heap() -> None:
    """Collect once, then keep everything built at start-up (Ray, the app, the catalog) out of later
    collections, as vLLM's server and Serve's replicas do: otherwise every full collection while serving
    walks the whole start-up heap again, a pause that also takes its CPU from the engines."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    logger.info(
        "startup heap frozen objects=%d collect_ms=%.0f",
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000,
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_serve(args: argparse.Namespace) -> int:
    # Imports here keep `maas keys` fast: Ray and uvicorn are only needed to serve.
    import uvicorn

    from gateway.app import build_app, open_admission
    from gateway.billing.ledger import DURABILITIES, open_ledger
    from gateway.catalog.model_prep import PreparationFailed, prepare_model
    from gateway.catalog.routing import ModelRouter
    from gateway.observability.metrics import GatewayMetrics
    from gateway.observability.utilization import UtilizationMeter, deployment_costs
    from gateway.serving.catalog_control import CatalogController
    from gateway.serving.chip_capacity import InsufficientChips
    from gateway.serving.serve_runtime import DeploymentFailed, RayOptions, ServeRuntime

    settings = Settings.from_env()
    if settings.ledger_durability not in DURABILITIES:
        print(f"error: MAAS_LEDGER_DURABILITY must be one of {', '.join(DURABILITIES)}", file=sys.stderr)
        return 2
    try:
        catalog = load_catalog(Path(args.config))
    except CatalogError as exc:
        print(exc, file=sys.stderr)
        return 2
    settings.ensure_dirs()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.monotonic()
    try:
        resources = _parse_resources(args.ray_resources)
    except ValueError as exc:
        print(f"error: --ray-resources: {exc}", file=sys.stderr)
        return 2
    if args.ray_address and (resources or args.ray_num_cpus):
        print(
            "error: --ray-resources and --ray-num-cpus describe a private head; a cluster's nodes "
            "declare their own (maas node resources)",
            file=sys.stderr,
        )
        return 2
    runtime = ServeRuntime(
        RayOptions(
            dashboard=args.dashboard,
            log_to_driver=args.verbose,
            num_cpus=args.ray_num_cpus,
            resources=resources,
            address=args.ray_address,
            channels=settings.replica_channels,
        )
    )
    keystore = KeyStore(settings.database_path)
    ledger = open_ledger(settings.database_url, str(settings.database_path), settings.ledger_durability)
    admission = open_admission(settings.database_url, str(settings.database_path))
    try:
        prepared = []
        for model in catalog.models:
            prepared.append((model, prepare_model(model, settings.models_dir, _progress)))
        if args.ray_address:
            _progress(f"joining the Ray cluster at {args.ray_address}")
        else:
            _progress("starting Ray on 127.0.0.1 (dashboard %s)" % ("on" if args.dashboard else "off"))
        runtime.start()
        signal.signal(signal.SIGTERM, _raise_interrupt)  # ray.init installed its own (sys.exit(15))
        runtime.check_capacity(catalog)
        _progress(f"starting {len(prepared)} model engine(s): {', '.join(m.name for m, _ in prepared)}")
        routed = runtime.deploy(prepared, _progress, catalog.chip_kinds())
        runtime.start_health_poller()
        router = ModelRouter(routed)
        metrics = GatewayMetrics()
        utilization = UtilizationMeter(metrics, deployment_costs(catalog), runtime.healthy_replicas)
        controller = CatalogController(
            catalog,
            runtime,
            router,
            settings.models_dir,
            _progress,
            on_applied=lambda applied: utilization.configure(deployment_costs(applied)),
        )
        app = build_app(
            router, keystore, ledger, metrics, admission, runtime.statuses, controller, utilization
        )
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        _freeze_startup_heap()
        _progress(f"ready in {time.monotonic() - started:.1f}s")
        print(f"Serving OpenAI-compatible API at http://{args.host}:{args.port}/v1", flush=True)
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as loop:
            loop.run(_serve(server, runtime))
    except (PreparationFailed, DeploymentFailed, InsufficientChips) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        _progress("stopping")
        runtime.stop()
        ledger.close()
        admission.store.close()
        keystore.close()
        _progress("stopped")
    return 0


async def _serve(server: uvicorn.Server, runtime: ServeRuntime) -> None:
    """uvicorn's loop, which also accepts the replicas' channels: their chunks land where requests wait."""
    await runtime.serve_channels()
    await server.serve()


def _parse_resources(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and v >= 0 for k, v in data.items()
    ):
        raise ValueError('expected an object of resource counts, e.g. {"GCU": 8}')
    return {k: float(v) for k, v in data.items()}


def _open_keystore() -> KeyStore:
    settings = Settings.from_env()
    settings.ensure_dirs()
    return KeyStore(settings.database_path)


def _limits(args: argparse.Namespace) -> RateLimits:
    return RateLimits(rpm=args.rpm, tpm=args.tpm)


def cmd_tenants_create(args: argparse.Namespace) -> int:
    budget = None
    if args.budget_tokens is not None or args.budget is not None:
        nanos = None if args.budget is None else int(Decimal(args.budget) * 1_000_000_000)
        budget = Budget(period=args.period, tokens=args.budget_tokens, nanos=nanos)
    store = _open_keystore()
    try:
        store.set_tenant(args.name, limits=_limits(args), budget=budget)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
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
            args.tenant, admin=args.admin, limits=_limits(args), expires_at=expires_at, models=models
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    kind = "operator (admin) key" if args.admin else "key"
    print(f"Created {kind} {created.key_id} for tenant {created.tenant!r}. It is shown only once:")
    print(created.secret)
    return 0


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


def cmd_catalog_check(args: argparse.Namespace) -> int:
    try:
        catalog = load_catalog(Path(args.path))
    except CatalogError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{args.path}: OK, {len(catalog.models)} model(s)")
    return 0


def _limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpm", type=int, default=None, help="requests per minute")
    parser.add_argument("--tpm", type=int, default=None, help="tokens per minute")


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maas", description="MaaS inference gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway and the models of a catalog")
    serve.add_argument("--config", default="models.yaml", help="model catalog (models.yaml)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--dashboard", action="store_true", help="start Ray's dashboard too")
    serve.add_argument("--verbose", action="store_true", help="forward replica logs here")
    serve.add_argument(
        "--ray-resources",
        default=None,
        help="chips this node declares to Ray as JSON, e.g. '{\"GCU\": 8}' (see `maas node resources`)",
    )
    serve.add_argument("--ray-num-cpus", type=int, default=None, help="CPUs this node declares to Ray")
    serve.add_argument(
        "--ray-address",
        default=None,
        help="deploy on an existing Ray cluster (host:port of its head) instead of a private local head",
    )
    serve.set_defaults(func=cmd_serve)

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

    usage = sub.add_parser("usage", help="usage and cost from the ledger")
    usage.add_argument("--group-by", default="model", help="model,tenant,key,chip,pool,day,hour,minute")
    usage.add_argument("--since", type=float, default=None, help="unix seconds")
    usage.add_argument("--until", type=float, default=None, help="unix seconds")
    usage.add_argument("--tenant", default=None, help="only this tenant")
    usage.add_argument("--csv", action="store_true", help="CSV instead of a table")
    usage.set_defaults(func=cmd_usage)

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
    add_chip_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
