"""`maas serve`: Ray, the catalog's models and the gateway's HTTP front, in one process until a signal."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from gateway.catalog.schema import CatalogError, load_catalog
from gateway.cli.settings import Settings
from gateway.cli.stores import open_admission_for, open_ledger_for, open_tenancy

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

    from gateway.api.drain import Drain
    from gateway.app import build_app
    from gateway.billing.ledger import DURABILITIES
    from gateway.catalog.model_prep import PreparationFailed, prepare_model
    from gateway.catalog.routing import ModelRouter
    from gateway.cli.draining_server import DrainingServer
    from gateway.observability.metrics import GatewayMetrics
    from gateway.observability.utilization import UtilizationMeter, deployment_costs
    from gateway.serving.app_names import check_installation
    from gateway.serving.catalog_control import CatalogController
    from gateway.serving.chip_capacity import InsufficientChips
    from gateway.serving.serve_runtime import DeploymentFailed, RayOptions, ServeRuntime

    settings = Settings.from_env()
    if settings.installation is not None:
        try:
            check_installation(settings.installation)
        except ValueError as exc:
            print(f"error: MAAS_INSTALLATION: {exc}", file=sys.stderr)
            return 2
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
            installation=settings.installation,
        )
    )
    tenancy = open_tenancy(settings, listen=True)
    ledger = open_ledger_for(settings)
    admission = open_admission_for(settings)
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
        routed = runtime.deploy(prepared, _progress, catalog)
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
        drain = Drain()
        app = build_app(
            router,
            tenancy.keystore,
            ledger,
            metrics,
            admission,
            runtime.statuses,
            controller,
            utilization,
            drain=drain,
            audit=tenancy.audit,
        )
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,  # after the drain: connections left open by clients
        )
        server = DrainingServer(config, drain, grace_s=args.shutdown_grace, lost=lambda: runtime.lost)
        _freeze_startup_heap()
        _progress(f"ready in {time.monotonic() - started:.1f}s")
        print(f"Serving OpenAI-compatible API at http://{args.host}:{args.port}/v1", flush=True)
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as loop:
            loop.run(_serve(server, runtime))
        if runtime.lost is not None:
            print(f"error: {runtime.lost}; restart the gateway", file=sys.stderr)
            return 1
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
        tenancy.close()
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


def add_serve_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    serve.add_argument(
        "--shutdown-grace",
        type=float,
        default=25.0,
        help="seconds a SIGTERM leaves the requests in flight to finish (new ones get 503) before stopping",
    )
    serve.set_defaults(func=cmd_serve)
