"""Ray on the local machine and one Ray Serve application per catalog model.

The gateway's HTTP front is its own uvicorn server in this process, which reaches the model replicas over
replica channels (``gateway.serving.replica_channels``) and through ``DeploymentHandle``s while a
model's channels are not all open; Serve's HTTP proxy is disabled. Measured on a 2-core machine,
Serve's proxy → ingress → replica path served 9-13x fewer requests/s than the same handler in plain
uvicorn, so the extra hop buys nothing here.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.channel_wire import ChannelInvite
from backends.token_count import load_prompt_counter
from gateway.catalog.pools import POOL_RESOURCE_PREFIX
from gateway.catalog.routing import RoutedModel
from gateway.catalog.schema import Catalog, CatalogError, Deployment, ModelEntry, parse_catalog
from gateway.serving.app_names import app_prefix
from gateway.serving.chip_capacity import (
    InsufficientChips,
    capacity_problems,
    chip_demands,
    pool_problems,
)
from gateway.serving.gateway_directory import Published
from gateway.serving.local_client import LocalModelClient, probe, runs_in_gateway
from gateway.serving.membership import Membership
from gateway.serving.ray_env import prepare_ray_environment
from gateway.serving.ray_head import RayHead
from gateway.serving.ray_model_client import RayModelClient
from gateway.serving.replica_channels import ChannelHub, ChannelRoute
from gateway.serving.serve_health import ServeHealth
from gateway.serving.serve_status import read_serve_status
from gateway.serving.units import Unit, serve_options, units_of

logger = logging.getLogger(__name__)


def _entry_key(model: ModelEntry, deployment: Deployment) -> tuple[object, ...]:
    """What a deployment's replicas run, from the catalog alone (the same on every gateway)."""
    return (model.weights, model.context_length, model.task, deployment)


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
    attach: bool = False
    """Serve what another gateway of the installation deployed (``attach``) instead of deploying."""


class ServeRuntime:
    """Starts and stops the local Ray instance (or joins a cluster) and deploys models onto it."""

    def __init__(self, options: RayOptions) -> None:
        self.options = options
        self._head: RayHead | None = None
        self._connected = False
        self._apps: set[str] = set()
        self._target_replicas: dict[str, int] = {}  # Serve application -> replicas asked for
        self._local: dict[str, LocalModelClient] = {}
        self._releases: dict[str, str] = {}  # Serve application -> release of its latest deployment
        self.channels: ChannelHub | None = None
        self._prefix = app_prefix(options.installation)
        self._units: dict[str, list[str]] = {}  # model -> its deployments' names
        self._pools_pinned = False  # the cluster's nodes declare pools (``check_capacity``)
        self._serve_clients: dict[str, RayModelClient] = {}  # deployment -> client of its Serve app
        self.membership = Membership(
            options.installation,
            f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}",
            options.attach,
            lambda: None if self.channels is None else self.channels.address(self.membership.gateway),
        )
        self._deployed: dict[str, tuple[object, ...]] = {}  # deployment -> what its replicas run
        # deployment -> (what its replicas run, release), as a deploying gateway that is gone left them
        self._inherited: dict[str, tuple[tuple[object, ...], str | None]] = {}
        self.health = ServeHealth(
            self._prefix, self._target_replicas, self._local, self._units, lambda: self._head
        )
        self.gcs_address: str | None = None
        """The GCS this gateway joined (its private head's, or the cluster's), once started."""

    def app_name(self, deployment: str) -> str:
        """The Serve application of the deployment called ``deployment`` in this installation."""
        return self._prefix + deployment

    def start(self) -> None:
        address = self.options.address
        prepare_ray_environment(private_head=address is None, dashboard=self.options.dashboard)
        import ray
        from ray import serve

        if address is None:
            self._head = RayHead.start(
                dashboard=self.options.dashboard,
                log_monitor=self.options.log_to_driver,  # only what streams workers' output to the gateway
                num_cpus=self.options.num_cpus,
                resources=self.options.resources,
            )
            address = self._head.gcs_address
        self.gcs_address = address
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
        self.membership.join()

    def publish(self, catalog: Catalog) -> None:
        """Tell attached gateways what this one deployed (after every change)."""
        self.membership.publish(catalog.model_dump(mode="json", exclude_unset=True), dict(self._releases))

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
        """Raise ``InsufficientChips`` when the cluster cannot host every replica the catalog asks for
        (on a cluster, in the pool it asks for)."""
        nodes = self.node_resources()
        problems = capacity_problems(chip_demands(catalog), nodes)
        # A cluster whose nodes declare no pool is one pool: replicas go anywhere their chips are.
        self._pools_pinned = self._head is None and any(
            name.startswith(POOL_RESOURCE_PREFIX) for node in nodes for name in node
        )
        if self._pools_pinned:
            in_gateway = {
                name
                for m in catalog.models
                for name, d in zip(m.deployment_names(), m.deployments, strict=True)
                if runs_in_gateway(d.backend, d.chips_per_replica)
            }
            problems += pool_problems(catalog, nodes, in_gateway)
        if problems:
            raise InsufficientChips("; ".join(problems))

    def deploy(
        self,
        models: list[tuple[ModelEntry, Path | str]],
        progress: Callable[[str], None],
        catalog: Catalog,
    ) -> list[RoutedModel]:
        """Deploy every deployment of every model and wait until each is ready, reporting progress.

        Backends that only call another server run in this process (``gateway.serving.local_client``); the
        others get a Serve application with replicas on their chips, in their pool. A deployment a model
        no longer has is removed once the new ones are up.
        """
        units = {m.name: units_of(m, path, catalog) for m, path in models}
        flat = [u for group in units.values() for u in group]
        local = [u for u in flat if runs_in_gateway(u.deployment.backend, u.spec.chips_per_replica)]
        clients: dict[str, Any] = self._deploy_local(local, progress)
        on_replicas = [u for u in flat if u.name not in clients]
        for unit in on_replicas:  # a model's deployment that did not change keeps its replicas
            if unit.name in self._serve_clients and self._deployed.get(unit.name) == self._deployed_key(unit):
                clients[unit.name] = self._serve_clients[unit.name]
            elif self._inherited.get(unit.name, (None,))[0] == _entry_key(unit.model, unit.deployment):
                clients[unit.name] = self._running_app_client(unit, self._inherited[unit.name][1])
                progress(f"{unit.name}: its replicas run as the previous deploying gateway left them")
        self._inherited.clear()
        clients.update(self._deploy_serve([u for u in on_replicas if u.name not in clients], progress))
        return self._routed(models, units, clients, catalog)

    def take_over(self, published: Published) -> list[str]:
        """Take over from a deploying gateway that is gone: the Serve applications it deployed become this
        gateway's, and those whose deployment the next ``deploy`` asks for unchanged keep their replicas
        (no restart of every engine because a gateway restarted). The models of its catalog that are not
        asked for again, for the caller to delete."""
        try:
            catalog = parse_catalog(published.catalog, "the previous deploying gateway's catalog")
        except CatalogError as exc:  # another release's catalog: deploy everything afresh
            logger.warning("previous catalog not readable, redeploying error=%s", exc)
            return []
        for model in catalog.models:
            names = model.deployment_names()
            self._units[model.name] = names
            for name, deployment in zip(names, model.deployments, strict=True):
                if runs_in_gateway(deployment.backend, deployment.chips_per_replica):
                    continue  # ran in that gateway's process: nothing on the cluster to take over
                app = self._prefix + name
                self._apps.add(app)
                self._inherited[name] = (_entry_key(model, deployment), published.releases.get(app))
        return [m.name for m in catalog.models]

    def _running_app_client(self, unit: Unit, release: str | None) -> RayModelClient:
        """A client of ``unit``'s Serve application as it runs already, deployed as release ``release``
        (``None``: without replica channels), by a deploying gateway other than this one."""
        from ray import serve

        app = self._prefix + unit.name
        if unit.deployment.autoscaling is None:
            self._target_replicas[app] = unit.deployment.replicas
        else:
            self._target_replicas.pop(app, None)
        self._releases.pop(app, None)
        if release is not None:
            self._releases[app] = release
        try:
            handle = serve.get_app_handle(app)
        except Exception as exc:
            raise DeploymentFailed(f"{unit.name}: no Serve application {app}: {exc}") from None
        client = self._client(unit, handle, self._route(unit) if release is not None else None)
        self._serve_clients[unit.name] = client
        self._deployed[unit.name] = self._deployed_key(unit)
        return client

    def _deployed_key(self, unit: Unit) -> tuple[object, ...]:
        """What, when it changes, needs new replicas of one deployment."""
        return (unit.deployment, unit.spec, unit.pool, self._pools_pinned)

    def attach(
        self,
        models: list[tuple[ModelEntry, Path | str]],
        progress: Callable[[str], None],
        catalog: Catalog,
        releases: dict[str, str],
    ) -> list[RoutedModel]:
        """Serve ``models`` as the deploying gateway deployed them (``releases``: its Serve applications'
        releases), without deploying: clients of their Serve applications, and this process's own client
        for a backend that runs in the gateway."""
        units = {m.name: units_of(m, path, catalog) for m, path in models}
        flat = [u for group in units.values() for u in group]
        local = [u for u in flat if runs_in_gateway(u.deployment.backend, u.spec.chips_per_replica)]
        clients: dict[str, Any] = self._deploy_local(local, progress)
        for unit in [u for u in flat if u.name not in clients]:
            release = releases.get(self._prefix + unit.name)
            clients[unit.name] = self._running_app_client(unit, release)
        return self._routed(models, units, clients, catalog)

    def _routed(
        self,
        models: list[tuple[ModelEntry, Path | str]],
        units: dict[str, list[Unit]],
        clients: dict[str, Any],
        catalog: Catalog,
    ) -> list[RoutedModel]:
        routed = []
        for model, path in models:
            names = [u.name for u in units[model.name]]
            for gone in set(self._units.get(model.name, ())) - set(names):
                self._remove_unit(gone)
            self._units[model.name] = names
            routed.append(
                RoutedModel.from_entry(
                    model,
                    clients=[clients[n] for n in names],
                    prompt_counter=load_prompt_counter(path),
                    catalog=catalog,
                )
            )
        self.health.refresh()
        return routed

    def clients(self, model: ModelEntry) -> list[Any]:
        """The clients of ``model``'s running deployments, for a catalog change that keeps them."""
        return [self._local.get(name) or self._serve_clients[name] for name in self._units[model.name]]

    def _deploy_local(
        self, units: list[Unit], progress: Callable[[str], None]
    ) -> dict[str, LocalModelClient]:
        clients = {}
        for unit in units:
            backend = unit.deployment.backend
            progress(f"checking {unit.name}: the {backend} backend runs in the gateway process")
            try:
                probe(unit.spec, backend)
            except Exception as exc:
                raise DeploymentFailed(f"{unit.name}: {exc}") from None
            clients[unit.name] = LocalModelClient(unit.spec, backend)
        for name, client in clients.items():
            previous = self._local.pop(name, None)
            if previous is not None:
                previous.close()
            self._local[name] = client
            if self._prefix + name in self._apps:  # it ran on replicas before this change
                self._delete_app(self._prefix + name)
        return clients

    def _deploy_serve(self, units: list[Unit], progress: Callable[[str], None]) -> dict[str, RayModelClient]:
        from ray import serve

        if not units:
            return {}
        started = time.monotonic()
        # Every application in one serve.run_many: Serve deploys them side by side, so the engines start
        # at once (one serve.run each started them one after another, a minute apiece on 2 cores, and
        # concurrent serve.run calls fail in Ray Serve 2.60 on its pickling by value).
        targets = [self._run_target(unit) for unit in units]
        with ThreadPoolExecutor(max_workers=1) as pool:
            running = pool.submit(serve.run_many, targets, wait_for_applications_running=True)
            while wait([running], timeout=5).not_done:
                statuses = read_serve_status(self._prefix, {}).statuses
                pending = [u.name for u in units if statuses.get(u.name) != "RUNNING"]
                progress(
                    f"starting engines: waiting for {', '.join(pending)} ({time.monotonic() - started:.0f}s)"
                )
        if running.exception() is not None:
            raise DeploymentFailed(str(running.exception()))
        for unit in units:
            local = self._local.pop(
                unit.name, None
            )  # if it ran in the gateway before, requests now go to replicas
            if local is not None:
                local.close()
            app = self._prefix + unit.name
            self._serve_clients[unit.name] = self._client(unit, serve.get_app_handle(app), self._route(unit))
            self._deployed[unit.name] = self._deployed_key(unit)
        return {unit.name: self._serve_clients[unit.name] for unit in units}

    def _client(self, unit: Unit, handle: Any, route: ChannelRoute | None) -> RayModelClient:
        """The gateway's client of ``unit``'s Serve application (``route``: its replica channels)."""
        return RayModelClient(
            handle,
            route,
            name=unit.name,
            start_wait_s=unit.deployment.start_wait_s,
            running=lambda: self.health.healthy_replicas().get(unit.name),
        )

    def _route(self, unit: Unit) -> ChannelRoute | None:
        if self.channels is None or unit.deployment.autoscaling is not None:
            return None
        app = self._prefix + unit.name
        return self.channels.route(
            app, self._releases[app], unit.deployment.replicas, unit.deployment.max_ongoing_requests
        )

    def delete(self, names: list[str]) -> None:
        """Remove models' deployments; replicas finish the requests they hold first. An attached gateway
        only stops serving them (the deploying gateway removes their replicas)."""
        for name in names:
            for unit in self._units.pop(name, [name]):
                self._remove_unit(unit)
        self.health.refresh()

    def _remove_unit(self, name: str) -> None:
        local = self._local.pop(name, None)
        if local is not None:
            local.close()
            return
        self._serve_clients.pop(name, None)
        self._deployed.pop(name, None)
        app = self._prefix + name
        if self.options.attach:
            self._target_replicas.pop(app, None)
            self._releases.pop(app, None)
        else:
            self._delete_app(app)

    def _delete_app(self, app: str) -> None:
        from ray import serve

        serve.delete(app)
        self._apps.discard(app)
        self._target_replicas.pop(app, None)
        self._releases.pop(app, None)

    def _run_target(self, unit: Unit) -> Any:
        """``unit``'s Serve application, to deploy (``serve.RunTarget``)."""
        from ray import serve

        from backends.replica import ModelReplica

        deployment, app = unit.deployment, self._prefix + unit.name
        options = serve_options(unit, pinned_to_pool=self._pools_pinned)
        # An autoscaled deployment's requests go through Serve's handle, whose counts drive its autoscaler
        # (requests over replica channels are invisible to it): it gets no channel ticket.
        invite = None
        if deployment.autoscaling is not None:
            options["autoscaling_config"] = unit.autoscaling_config()
            self._target_replicas.pop(app, None)  # how many run is the autoscaler's: read, not assumed
        else:
            options["num_replicas"] = deployment.replicas
            self._target_replicas[app] = deployment.replicas
            invite = self._invite(app)
        app_graph = (
            serve.deployment(ModelReplica)  # type: ignore[attr-defined]
            .options(**options)
            .bind(unit.spec, deployment.backend, invite)
        )
        self._apps.add(app)
        return serve.RunTarget(app_graph, name=app, route_prefix=None)

    def _invite(self, app: str) -> ChannelInvite | None:
        """A new release of ``app``: gateways route over channels only to that release's replicas, which
        open a channel to every gateway in the directory."""
        if self.channels is None:
            return None
        self._releases[app] = secrets.token_hex(4)
        return self.membership.invite(app, self._releases[app])

    def channel_counts(self) -> dict[str, int]:
        """Open replica channels per deployment."""
        counts = {} if self.channels is None else self.channels.counts()
        return {app.removeprefix(self._prefix): n for app, n in counts.items()}

    @property
    def lost(self) -> str | None:
        """Why this gateway can serve nothing any more (its private Ray head is gone), once it is so."""
        return self.health.lost

    def stop(self) -> None:
        """Stop this gateway's models; then the Ray processes it started, or leave the joined cluster."""
        self.health.stop()
        if not self._connected:
            return
        import ray
        from ray import serve

        def remove_models() -> None:
            others = self.membership.leave()
            if self._head is not None:
                serve.shutdown()  # type: ignore[no-untyped-call]
                return
            if others:  # they go on serving this installation's replicas
                logger.info("gateway stops, its models stay for gateways=%s", others)
                return
            for name in sorted(self._apps):  # a shared cluster keeps everything that is not ours
                serve.delete(name)
            if not self.options.attach:
                self.membership.directory.remove()

        try:
            if ray.is_initialized() and self.lost is None:
                # Graceful: replicas stop their engines. Bounded, in case the cluster is already gone.
                stopper = threading.Thread(target=remove_models, daemon=True)
                stopper.start()
                stopper.join(timeout=60)
                ray.shutdown()
        finally:
            self.membership.stop()  # the heartbeat ends, whatever happened above
            self._connected = False
            if self.channels is not None:
                self.channels.close()
            if self._head is not None:
                self._head.stop()
                self._head = None
