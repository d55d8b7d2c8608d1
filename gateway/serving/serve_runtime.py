"""Ray on the local machine and one Ray Serve application per catalog model.

The gateway's HTTP front is its own uvicorn server in this process, which reaches the model replicas over
replica channels (``gateway.serving.replica_channels``) and through ``DeploymentHandle``s while a
model's channels are not all open; Serve's HTTP proxy is disabled. Measured on a 2-core machine,
Serve's proxy → ingress → replica path served 9-13x fewer requests/s than the same handler in plain
uvicorn, so the extra hop buys nothing here.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import ModelSpec
from backends.channel_wire import ChannelTicket
from backends.chips import ChipKind, ray_actor_resources
from backends.token_count import load_prompt_counter
from gateway.catalog.routing import RoutedModel
from gateway.catalog.schema import Catalog, ModelEntry
from gateway.serving.app_names import app_prefix
from gateway.serving.chip_capacity import InsufficientChips, capacity_problems, chip_demands
from gateway.serving.local_client import LocalModelClient, probe, runs_in_gateway
from gateway.serving.ray_env import REPLICA_ENV, prepare_ray_environment
from gateway.serving.ray_head import RayHead
from gateway.serving.ray_model_client import RayModelClient
from gateway.serving.replica_channels import ChannelHub, ChannelRoute
from gateway.serving.serve_status import read_serve_status

logger = logging.getLogger(__name__)

RAY_UNREACHABLE = "RAY_UNREACHABLE"
STALE_AFTER_S = 10.0
"""A model status not refreshed for this long is not believed: Ray is not answering."""
LOST_AFTER_S = 30.0
"""A private head unreachable this long is taken as lost (its replicas with it): the gateway stops."""


class DeploymentFailed(RuntimeError):
    """A model's Serve application could not reach RUNNING."""


@dataclass(frozen=True)
class RayOptions:
    dashboard: bool = False
    num_cpus: int | None = None
    log_to_driver: bool = False
    resources: dict[str, float] | None = None
    """Chips this node declares to Ray (custom resources such as ``{"GCU": 8}``)."""
    address: str | None = None
    """An existing Ray cluster to deploy on (``host:port`` of its GCS) instead of a private local head."""
    channels: bool = True
    """Replicas stream to the gateway over replica channels (``gateway.serving.replica_channels``)."""
    installation: str | None = None
    """This installation's id on a shared cluster: its Serve applications are named apart (``app_names``)."""


def model_spec(model: ModelEntry, path: Path | str, chip: ChipKind) -> ModelSpec:
    """What a backend needs to serve ``model`` from ``path`` on ``chip``."""
    deployment = model.deployments[0]
    return ModelSpec(
        name=model.name,
        weights_path=str(path),
        context_length=model.context_length,
        chip=deployment.chip,
        engine=dict(deployment.engine),
        chip_kind=chip,
        chips_per_replica=deployment.chips_per_replica,
        task=model.task,
    )


class ServeRuntime:
    """Starts and stops the local Ray instance (or joins a cluster) and deploys models onto it."""

    def __init__(self, options: RayOptions) -> None:
        self.options = options
        self._head: RayHead | None = None
        self._statuses: dict[str, str] = {}
        self._healthy: dict[str, int] = {}
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._polled_at = time.monotonic()  # the last status read that Ray answered
        self.lost: str | None = None
        """Why this gateway can serve nothing any more (its private Ray head is gone), once it is so."""
        self._connected = False
        self._apps: set[str] = set()
        self._target_replicas: dict[str, int] = {}  # Serve application -> replicas asked for
        self._local: dict[str, LocalModelClient] = {}
        self._releases: dict[str, str] = {}  # Serve application -> release of its latest deployment
        self.channels: ChannelHub | None = None
        self._prefix = app_prefix(options.installation)

    def app_name(self, model: ModelEntry) -> str:
        """The Serve application of ``model`` in this installation."""
        return self._prefix + model.name

    def start(self) -> None:
        address = self.options.address
        prepare_ray_environment(private_head=address is None, dashboard=self.options.dashboard)
        import ray
        from ray import serve

        if address is None:
            self._head = RayHead.start(
                dashboard=self.options.dashboard,
                num_cpus=self.options.num_cpus,
                resources=self.options.resources,
            )
            address = self._head.gcs_address
        ray.init(
            address=address,
            namespace="maas",
            log_to_driver=self.options.log_to_driver,
            configure_logging=False,
        )
        self._connected = True
        serve.start(proxy_location="Disabled")
        if self.options.channels:
            # Replicas dial this address: loopback on the private head, this node's address in a cluster.
            host = "127.0.0.1" if self._head is not None else ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
            self.channels = ChannelHub(host)

    async def serve_channels(self) -> None:
        """Accept the replicas' channels in the running loop, the one that serves requests."""
        if self.channels is not None:
            await self.channels.serve()

    def node_resources(self) -> list[dict[str, float]]:
        """Each alive Ray node's declared resources."""
        import ray

        nodes = ray.nodes()  # type: ignore[no-untyped-call]
        return [dict(node.get("Resources", {})) for node in nodes if node.get("Alive")]

    def cluster_chips(self) -> dict[str, dict[str, float]]:
        """Total and free units of every chip resource in the cluster (``GPU``, ``NPU``, custom ones)."""
        import ray

        total = ray.cluster_resources()  # type: ignore[no-untyped-call]
        free = ray.available_resources()  # type: ignore[no-untyped-call]
        skip = ("CPU", "memory", "object_store_memory")
        return {
            name: {"total": float(amount), "available": float(free.get(name, 0))}
            for name, amount in sorted(total.items())
            if name not in skip and not name.startswith("node:") and not name.startswith("accelerator_type:")
        }

    def check_capacity(self, catalog: Catalog) -> None:
        """Raise ``InsufficientChips`` when the cluster cannot host every replica the catalog asks for."""
        problems = capacity_problems(chip_demands(catalog), self.node_resources())
        if problems:
            raise InsufficientChips("; ".join(problems))

    def deploy(
        self,
        models: list[tuple[ModelEntry, Path | str]],
        progress: Callable[[str], None],
        chips: dict[str, ChipKind],
    ) -> list[RoutedModel]:
        """Deploy every model and wait until each is ready, reporting progress.

        Backends that only call another server run in this process (``gateway.serving.local_client``); the
        others get a Serve application with replicas on their chips.
        """
        specs = {
            model.name: model_spec(model, path, chips[model.deployments[0].chip]) for model, path in models
        }
        local = [
            m for m, _ in models if runs_in_gateway(m.deployments[0].backend, specs[m.name].chips_per_replica)
        ]
        clients: dict[str, Any] = self._deploy_local(local, specs, progress)
        clients.update(self._deploy_serve([m for m, _ in models if m.name not in clients], specs, progress))
        routed = [
            RoutedModel.from_entry(
                model,
                client=clients[model.name],
                deployment=f"gateway:{model.name}" if model.name in self._local else self.app_name(model),
                prompt_counter=load_prompt_counter(path),
            )
            for model, path in models
        ]
        self._refresh_statuses()
        return routed

    def _deploy_local(
        self, models: list[ModelEntry], specs: dict[str, ModelSpec], progress: Callable[[str], None]
    ) -> dict[str, LocalModelClient]:

        clients = {}
        for model in models:
            backend = model.deployments[0].backend
            progress(f"checking {model.name}: the {backend} backend runs in the gateway process")
            try:
                probe(specs[model.name], backend)
            except Exception as exc:
                raise DeploymentFailed(f"{model.name}: {exc}") from None
            clients[model.name] = LocalModelClient(specs[model.name], backend)
        for name, client in clients.items():
            previous = self._local.pop(name, None)
            if previous is not None:
                previous.close()
            self._local[name] = client
            if self._prefix + name in self._apps:  # it ran on replicas before this change
                self._delete_app(self._prefix + name)
        return clients

    def _deploy_serve(
        self, models: list[ModelEntry], specs: dict[str, ModelSpec], progress: Callable[[str], None]
    ) -> dict[str, RayModelClient]:
        from ray import serve

        started = time.monotonic()
        # One serve.run at a time: Ray Serve 2.60 registers a module for pickling by value around each
        # config it serialises, and concurrent serve.run calls fail with "... is not registered for
        # pickle by value". The engines start one after another; this thread only reports progress.
        with ThreadPoolExecutor(max_workers=1) as pool:
            futures = {
                model.name: pool.submit(self._deploy_one, model, specs[model.name]) for model in models
            }
            while wait(futures.values(), timeout=5).not_done:
                pending = [name for name, f in futures.items() if not f.done()]
                progress(
                    f"starting engines: waiting for {', '.join(pending)} ({time.monotonic() - started:.0f}s)"
                )
        failures = [f"{name}: {f.exception()}" for name, f in futures.items() if f.exception()]
        if failures:
            raise DeploymentFailed("; ".join(failures))
        for model in models:
            self._local.pop(model.name, None)  # if it ran in the gateway before, requests now go to replicas
        return {
            model.name: RayModelClient(serve.get_app_handle(self.app_name(model)), self._route(model))
            for model in models
        }

    def _route(self, model: ModelEntry) -> ChannelRoute | None:
        if self.channels is None:
            return None
        deployment, app = model.deployments[0], self.app_name(model)
        return self.channels.route(
            app, self._releases[app], deployment.replicas, deployment.max_ongoing_requests
        )

    def delete(self, names: list[str]) -> None:
        """Remove models' Serve applications; replicas finish the requests they hold first."""
        for name in names:
            local = self._local.pop(name, None)
            if local is not None:
                local.close()
                continue
            self._delete_app(self._prefix + name)
        self._refresh_statuses()

    def _delete_app(self, app: str) -> None:
        from ray import serve

        serve.delete(app)
        self._apps.discard(app)
        self._target_replicas.pop(app, None)
        self._releases.pop(app, None)

    def _deploy_one(self, model: ModelEntry, spec: ModelSpec) -> None:
        from ray import serve

        from backends.replica import ModelReplica

        deployment = model.deployments[0]
        actor_options: dict[str, Any] = {
            "num_cpus": 0,
            "runtime_env": {"env_vars": REPLICA_ENV},
            **ray_actor_resources(spec.chip_kind, spec.chips_per_replica),
        }
        app = (
            serve.deployment(ModelReplica)  # type: ignore[attr-defined]
            .options(
                name=model.name,
                num_replicas=deployment.replicas,
                max_ongoing_requests=deployment.max_ongoing_requests,
                ray_actor_options=actor_options,
                health_check_period_s=10,
                health_check_timeout_s=60,
                graceful_shutdown_timeout_s=30,  # in-flight requests finish on removal or update
            )
            .bind(spec, deployment.backend, self._ticket(self.app_name(model)))
        )
        self._apps.add(self.app_name(model))
        self._target_replicas[self.app_name(model)] = deployment.replicas
        serve.run(app, name=self.app_name(model), route_prefix=None)

    def _ticket(self, app: str) -> ChannelTicket | None:
        """A new release of ``app``: the gateway routes over channels only to that release's replicas."""
        if self.channels is None:
            return None
        self._releases[app] = secrets.token_hex(4)
        return self.channels.ticket(app, self._releases[app])

    # -- health --------------------------------------------------------------------------------

    def _refresh_statuses(self) -> None:
        status = read_serve_status(self._prefix, self._target_replicas)
        statuses, healthy = status.statuses, status.healthy
        for model in list(self._local):  # served by this process: up while the gateway is
            statuses[model], healthy[model] = "RUNNING", 1
        self._statuses, self._healthy = statuses, healthy
        self._polled_at = time.monotonic()

    def _check_head(self) -> None:
        """A private head that exited, or stayed unreachable, took every replica with it."""
        if self._head is None or self.lost is not None:
            return
        code = self._head.process.poll()
        if code is not None:
            self.lost = f"the private Ray head exited (code {code})"
        elif time.monotonic() - self._polled_at > LOST_AFTER_S:
            self.lost = f"the private Ray head did not answer for {LOST_AFTER_S:.0f} s"
        if self.lost is not None:
            logger.error("ray lost: %s; every replica is gone, the gateway stops", self.lost)

    def start_health_poller(self, period_s: float = 2.0) -> None:
        def loop() -> None:
            while not self._stop.wait(period_s):
                self._check_head()
                try:
                    self._refresh_statuses()
                except Exception as exc:  # the next poll tries again
                    logger.warning("health poll failed error=%s", type(exc).__name__)
                self._check_head()

        self._poller = threading.Thread(target=loop, name="maas-health", daemon=True)
        self._poller.start()

    def _ray_answers(self) -> bool:
        return self.lost is None and time.monotonic() - self._polled_at <= STALE_AFTER_S

    def statuses(self) -> dict[str, str]:
        """Each model's status; ``RAY_UNREACHABLE`` for the Serve ones while Ray does not answer, never
        the last status it gave."""
        if self._ray_answers():
            return dict(self._statuses)
        return {m: "RUNNING" if m in self._local else RAY_UNREACHABLE for m in self._statuses}

    def healthy_replicas(self) -> dict[str, int]:
        if self._ray_answers():
            return dict(self._healthy)
        return {m: n if m in self._local else 0 for m, n in self._healthy.items()}

    def channel_counts(self) -> dict[str, int]:
        """Open replica channels per model."""
        counts = {} if self.channels is None else self.channels.counts()
        return {app.removeprefix(self._prefix): n for app, n in counts.items()}

    def stop(self) -> None:
        """Stop this gateway's models; then the Ray processes it started, or leave the joined cluster."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        if not self._connected:
            return
        import ray
        from ray import serve

        def remove_models() -> None:
            if self._head is not None:
                serve.shutdown()  # type: ignore[no-untyped-call]
                return
            for name in sorted(self._apps):  # a shared cluster keeps everything that is not ours
                serve.delete(name)

        try:
            if ray.is_initialized() and self.lost is None:
                # Graceful: replicas stop their engines. Bounded, in case the cluster is already gone.
                stopper = threading.Thread(target=remove_models, daemon=True)
                stopper.start()
                stopper.join(timeout=60)
                ray.shutdown()
        finally:
            self._connected = False
            if self.channels is not None:
                self.channels.close()
            if self._head is not None:
                self._head.stop()
                self._head = None
