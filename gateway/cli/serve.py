"""`maas serve`: Ray, the catalog's models and the gateway's HTTP front, in one process until a signal.

With ``--attach`` the gateway deploys nothing: it serves what another gateway of the installation deployed
on the cluster (``gateway.serving.gateway_directory``). With ``--workers N`` this gateway starts N-1
attached gateways on the same port (``gateway.cli.serve_workers``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from gateway.catalog.schema import Catalog, CatalogError, load_catalog, parse_catalog
from gateway.cli.serve_workers import (
    Workers,
    exec_with_shared_metrics,
    listening_socket,
    owned_metrics_dir,
    parent_gone,
    shared_metrics_dir,
)
from gateway.cli.settings import Settings
from gateway.cli.stores import open_admission_for, open_ledger_for, open_tenancy

if TYPE_CHECKING:
    from collections.abc import Callable

    import uvicorn

    from gateway.billing.ledger import UsageRecord
    from gateway.cli.logs import BatchWriter
    from gateway.serving.serve_runtime import ServeRuntime

logger = logging.getLogger("maas")
KEEP_ALIVE_S = 75
"""How long an idle client connection stays open (seconds)."""


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


def _usage_log(writer: BatchWriter | None) -> Callable[[UsageRecord], None]:
    """Each request's usage line, its record made by the log writer's thread (``BatchWriter.line``)."""
    from gateway.billing.metering import USAGE_LINE, log_usage, usage_args

    if writer is None:  # this process's logs were routed before: through logging, then
        return log_usage
    usage = logging.getLogger("maas.usage")

    def log(record: UsageRecord) -> None:
        writer.line(usage, logging.INFO, USAGE_LINE, usage_args(record))

    return log


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_serve(args: argparse.Namespace) -> int:
    # Imports here keep `maas keys` fast: Ray and uvicorn are only needed to serve.
    import uvicorn

    from gateway.cli.logs import log_off_the_loop

    writer = log_off_the_loop(logging.INFO)  # the event loop queues log records; a thread writes them

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
    from gateway.serving.membership import GatewayConflict
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
    problem = _option_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    catalog: Catalog | None = None
    if not args.attach:
        try:
            catalog = load_catalog(Path(args.config or "models.yaml"))
        except CatalogError as exc:
            print(exc, file=sys.stderr)
            return 2
    settings.ensure_dirs()
    if args.workers > 1 and shared_metrics_dir(settings.home) is None:
        exec_with_shared_metrics(settings.home)  # one /metrics for every process: does not return
    metrics_dir = shared_metrics_dir(settings.home)
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
            attach=args.attach,
        )
    )
    tenancy = open_tenancy(settings, listen=True)
    ledger = open_ledger_for(settings)
    admission = open_admission_for(settings)
    workers: Workers | None = None
    follow_stop = threading.Event()
    try:
        prepared = []
        for model in catalog.models if catalog is not None else ():
            prepared.append((model, prepare_model(model, settings.models_dir, _progress)))
        if args.ray_address:
            _progress(f"joining the Ray cluster at {args.ray_address}")
        else:
            _progress("starting Ray on 127.0.0.1 (dashboard %s)" % ("on" if args.dashboard else "off"))
        runtime.start()
        signal.signal(signal.SIGTERM, _raise_interrupt)  # ray.init installed its own (sys.exit(15))
        metrics = GatewayMetrics(metrics_dir)
        utilization = UtilizationMeter(
            metrics, [], runtime.health.healthy_replicas, accounts=runtime.membership.accounts_for_replicas
        )
        router = ModelRouter()
        published = None
        if catalog is None:  # attached: the deploying gateway's catalog, followed from now on
            published = runtime.membership.published(wait_s=args.attach_timeout)
            if published is None:
                raise DeploymentFailed(
                    f"no gateway of this installation published a catalog within {args.attach_timeout:.0f} s"
                )
            catalog = parse_catalog(published.catalog, "the deploying gateway's catalog")
        controller = CatalogController(
            catalog,
            runtime,
            router,
            settings.models_dir,
            _progress,
            on_applied=lambda applied: utilization.configure(deployment_costs(applied)),
        )
        if args.attach:
            assert published is not None
            _progress(f"attaching to {len(catalog.models)} model(s) deployed by {published.deployer}")
            controller.adopt(published)
            controller.follow(follow_stop)
        else:
            runtime.check_capacity(catalog)
            previous = runtime.membership.published()  # a deploying gateway of this installation, gone
            left = runtime.take_over(previous) if previous is not None else []
            _progress(f"starting {len(prepared)} model engine(s): {', '.join(m.name for m, _ in prepared)}")
            router.replace(runtime.deploy(prepared, _progress, catalog))
            gone = [name for name in left if name not in {m.name for m in catalog.models}]
            if gone:  # models the previous deploying gateway served and this catalog does not
                runtime.delete(gone)
            utilization.configure(deployment_costs(catalog))
            runtime.publish(catalog)
        runtime.health.start()
        try:
            sock = listening_socket(args.host, args.port, reuse_port=args.reuse_port or args.workers > 1)
        except OSError as exc:
            raise DeploymentFailed(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
        if args.workers > 1:
            assert runtime.gcs_address is not None
            workers = Workers.spawn(args.workers - 1, args, runtime.gcs_address, metrics_dir)
            _wait_for_workers(runtime, workers, timeout_s=args.attach_timeout)
        drain = Drain()
        app = build_app(
            router,
            tenancy.keystore,
            ledger,
            metrics,
            admission,
            runtime.health.statuses,
            controller,
            utilization,
            drain=drain,
            audit=tenancy.audit,
            usage_log=_usage_log(writer),
        )
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,  # after the drain: connections left open by clients
            # Longer than the idle timeouts of the clients and load balancers in front (60 s is common):
            # the side that closes an idle connection must be the client, or a request sent just as
            # the gateway closes it fails (uvicorn's default is 5 s).
            timeout_keep_alive=KEEP_ALIVE_S,
            # The gateway reads no client address or scheme: uvicorn's X-Forwarded-* rewrite of every
            # request's scope would be work for nothing (and a header a client could forge).
            proxy_headers=False,
        )
        server = DrainingServer(
            config,
            drain,
            grace_s=args.shutdown_grace,
            lost=lambda: _watch(runtime, workers, args.parent_pid),
            on_drain=workers.terminate if workers is not None else lambda: None,
        )
        _freeze_startup_heap()
        runtime.membership.serving()
        _progress(f"ready in {time.monotonic() - started:.1f}s")
        print(f"Serving OpenAI-compatible API at http://{args.host}:{args.port}/v1", flush=True)
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as loop:
            loop.run(_serve(server, runtime, sock))
        lost = _watch(runtime, workers, args.parent_pid)
        if lost is not None:
            print(f"error: {lost}; restart the gateway", file=sys.stderr)
            return 1
    except (PreparationFailed, DeploymentFailed, InsufficientChips, GatewayConflict) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        _progress("stopping")
        follow_stop.set()
        if workers is not None:
            workers.stop(timeout_s=args.shutdown_grace + 30)
        runtime.stop()
        ledger.close()
        admission.store.close()
        tenancy.close()
        if (owned := owned_metrics_dir(settings.home)) is not None:
            shutil.rmtree(owned, ignore_errors=True)
        _progress("stopped")
    return 0


async def _serve(server: uvicorn.Server, runtime: ServeRuntime, sock: socket.socket) -> None:
    """uvicorn's loop, which also accepts the replicas' channels: their chunks land where requests wait."""
    await runtime.serve_channels()
    await server.serve(sockets=[sock])


def _watch(runtime: ServeRuntime, workers: Workers | None, parent_pid: int | None) -> str | None:
    """Why this gateway must stop (None while it serves): its replicas are lost, or the process that
    started it (an attached worker's) is gone. Workers that stopped are reaped from the metrics meanwhile."""
    if workers is not None:
        workers.reap()
    return runtime.lost or parent_gone(parent_pid)


def _option_problem(args: argparse.Namespace) -> str | None:
    if args.workers < 1:
        return "--workers must be at least 1"
    if not args.attach:
        return None
    if args.config is not None:
        return "--attach serves the catalog the deploying gateway published; give --config to that gateway"
    if not args.ray_address:
        return "--attach needs --ray-address, the cluster the deploying gateway runs on"
    if args.workers > 1:
        return "--workers is for the deploying gateway (it starts the attached ones)"
    return None


def _wait_for_workers(runtime: ServeRuntime, workers: Workers, timeout_s: float) -> None:
    """Until every attached worker serves; a worker that exits first fails the start."""
    want = len(workers.processes)
    deadline = time.monotonic() + timeout_s
    while len(set(runtime.membership.attached())) < want:
        if workers.exited() or time.monotonic() > deadline:
            from gateway.serving.serve_runtime import DeploymentFailed

            raise DeploymentFailed(f"{want} attached gateway worker(s) did not start ({workers.exited()})")
        _progress(f"waiting for {want} attached gateway worker(s)")
        time.sleep(2)


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
    serve.add_argument("--config", default=None, help="model catalog (default models.yaml)")
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
        "--workers",
        type=int,
        default=1,
        help="gateway processes on this host and port: this one deploys, the others attach to it",
    )
    serve.add_argument(
        "--attach",
        action="store_true",
        help="serve what another gateway of this installation deployed on the --ray-address cluster",
    )
    serve.add_argument(
        "--attach-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the deploying gateway's catalog (--attach) or the workers (--workers)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    serve.add_argument(
        "--shutdown-grace",
        type=float,
        default=25.0,
        help="seconds a SIGTERM leaves the requests in flight to finish (new ones get 503) before stopping",
    )
    serve.set_defaults(func=cmd_serve)
