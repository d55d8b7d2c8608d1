"""Applying a new catalog to a running gateway: add, remove and change models without a restart.

New and changed models are prepared and deployed first (of a changed model, only the deployments that
changed: each one's Serve application is updated in place, and Serve starts the new replicas before it
stops the old ones; the model's other deployments keep theirs). Then the routing table is swapped
in one step. Removed models leave the table first, so new requests get 404, and their replicas are
deleted only after that; Serve lets the requests they hold finish.

The deploying gateway publishes each catalog it applied in the gateway directory
(``gateway.serving.gateway_directory``). An attached gateway takes no changes itself: it follows what was
published, attaching to new and redeployed models' Serve applications and dropping removed ones.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.catalog.model_prep import prepare_model
from gateway.catalog.routing import ModelRouter, RoutedModel
from gateway.catalog.schema import Catalog, ModelEntry, parse_catalog
from gateway.errors import CatalogAttached, InsufficientCapacity
from gateway.serving.chip_capacity import InsufficientChips
from gateway.serving.gateway_directory import Published
from gateway.serving.serve_runtime import ServeRuntime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyResult:
    added: list[str]
    removed: list[str]
    redeployed: list[str]
    updated: list[str]  # metadata only (aliases, prices, owner, reasoning): no new replicas
    unchanged: list[str]


def _deployment_key(model: ModelEntry) -> tuple[object, ...]:
    """What, when it changes, needs new replicas."""
    return (model.weights, tuple(model.deployments), model.context_length)


def _changes(old: Catalog, new: Catalog) -> ApplyResult:
    before = {m.name: m for m in old.models}
    after = {m.name: m for m in new.models}
    kept = [n for n in after if n in before]
    redeployed = [n for n in kept if _deployment_key(before[n]) != _deployment_key(after[n])]
    return ApplyResult(
        added=[n for n in after if n not in before],
        removed=[n for n in before if n not in after],
        redeployed=redeployed,
        updated=[n for n in kept if n not in redeployed and before[n] != after[n]],
        unchanged=[n for n in kept if before[n] == after[n]],
    )


class CatalogController:
    def __init__(
        self,
        catalog: Catalog,
        runtime: ServeRuntime,
        router: ModelRouter,
        models_dir: Path,
        progress: Callable[[str], None],
        on_applied: Callable[[Catalog], None] = lambda catalog: None,
    ) -> None:
        self._catalog = catalog
        self._runtime = runtime
        self._router = router
        self._models_dir = models_dir
        self._progress = progress
        self._on_applied = on_applied
        self._lock = asyncio.Lock()
        self._version = 0  # of the published catalog this (attached) gateway serves
        self._releases: dict[str, str] = {}

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def runtime(self) -> ServeRuntime:
        return self._runtime

    async def apply(self, catalog: Catalog) -> ApplyResult:
        if self._runtime.options.attach:
            raise CatalogAttached(
                "This gateway is attached to the models another gateway of the installation deployed; "
                "apply catalog changes through that gateway (this one follows them within seconds)."
            )
        async with self._lock:  # one change at a time
            return await asyncio.to_thread(self._apply, catalog)

    def _apply(self, catalog: Catalog) -> ApplyResult:
        changes = _changes(self._catalog, catalog)
        added, removed, redeployed = changes.added, changes.removed, changes.redeployed
        new = {m.name: m for m in catalog.models}
        try:
            self._runtime.check_capacity(catalog)  # before anything changes: refuse, don't leave it pending
        except InsufficientChips as exc:
            raise InsufficientCapacity(f"The catalog was not applied: {exc}.", param="catalog") from None
        to_deploy = [
            (new[n], prepare_model(new[n], self._models_dir, self._progress)) for n in added + redeployed
        ]
        deployed = (
            {r.name: r for r in self._runtime.deploy(to_deploy, self._progress, catalog)} if to_deploy else {}
        )
        self._swap(catalog, deployed)
        if removed:
            self._runtime.delete(removed)
        self._runtime.publish(catalog)
        logger.info(
            "catalog applied added=%s removed=%s redeployed=%s updated=%s",
            added,
            removed,
            redeployed,
            changes.updated,
        )
        return changes

    def _swap(self, catalog: Catalog, deployed: dict[str, RoutedModel]) -> None:
        """Route ``catalog``: ``deployed`` for its new and changed models, the running clients for the
        rest (with the new terms)."""
        table: list[RoutedModel] = []
        new = {m.name: m for m in catalog.models}
        for name, entry in new.items():
            if name in deployed:
                table.append(deployed[name])
                continue
            current = self._router.get(name)
            assert current is not None, name
            table.append(
                RoutedModel.from_entry(
                    entry,
                    clients=self._runtime.clients(entry),
                    prompt_counter=current.prompt_counter,
                    catalog=catalog,
                )
            )
        self._router.replace(table)  # from here on, removed names answer 404
        self._catalog = catalog
        self._on_applied(catalog)

    # -- an attached gateway --------------------------------------------------------------------

    def adopt(self, published: Published) -> ApplyResult:
        """Serve what the deploying gateway published (an attached gateway, at start and on each change)."""
        catalog = parse_catalog(published.catalog, "the deploying gateway's catalog")
        if self._version:
            changes = _changes(self._catalog, catalog)
        else:  # the first: every model is new to this gateway
            changes = ApplyResult([m.name for m in catalog.models], [], [], [], [])
        releases_changed = [
            m.name
            for m in catalog.models
            if any(
                published.releases.get(app) != self._releases.get(app)
                for app in map(self._runtime.app_name, m.deployment_names())
            )
        ]
        names = set(changes.added + changes.redeployed + releases_changed)
        to_attach = [
            (m, prepare_model(m, self._models_dir, self._progress)) for m in catalog.models if m.name in names
        ]
        attached = self._runtime.attach(to_attach, self._progress, catalog, published.releases)
        self._swap(catalog, {r.name: r for r in attached})
        if changes.removed and self._version:
            self._runtime.delete(changes.removed)
        self._version, self._releases = published.version, dict(published.releases)
        logger.info("catalog followed version=%d attached=%s", published.version, sorted(names))
        return changes

    def follow(self, stop: threading.Event, period_s: float = 2.0) -> threading.Thread:
        """Adopt each catalog the deploying gateway publishes, until ``stop`` is set."""

        def loop() -> None:
            while not stop.wait(period_s):
                try:
                    published = self._runtime.membership.published()
                    if published is not None and published.version != self._version:
                        self.adopt(published)
                except Exception as exc:  # the next poll tries again
                    logger.warning("catalog follow failed error=%s", type(exc).__name__)

        thread = threading.Thread(target=loop, name="maas-catalog-follow", daemon=True)
        thread.start()
        return thread
