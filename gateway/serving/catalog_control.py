"""Applying a new catalog to a running gateway: add, remove and change models without a restart.

New and changed models are prepared and deployed first (a changed model's Serve application is updated
in place; Serve starts the new replicas before it stops the old ones). Then the routing table is swapped
in one step. Removed models leave the table first, so new requests get 404, and their replicas are
deleted only after that; Serve lets the requests they hold finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.catalog.model_prep import prepare_model
from gateway.catalog.routing import ModelRouter, RoutedModel
from gateway.catalog.schema import Catalog, ModelEntry
from gateway.errors import InsufficientCapacity
from gateway.serving.chip_capacity import InsufficientChips
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

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def runtime(self) -> ServeRuntime:
        return self._runtime

    async def apply(self, catalog: Catalog) -> ApplyResult:
        async with self._lock:  # one change at a time
            return await asyncio.to_thread(self._apply, catalog)

    def _apply(self, catalog: Catalog) -> ApplyResult:
        old = {m.name: m for m in self._catalog.models}
        new = {m.name: m for m in catalog.models}
        added = [n for n in new if n not in old]
        removed = [n for n in old if n not in new]
        kept = [n for n in new if n in old]
        redeployed = [n for n in kept if _deployment_key(old[n]) != _deployment_key(new[n])]
        updated = [n for n in kept if n not in redeployed and old[n] != new[n]]
        unchanged = [n for n in kept if old[n] == new[n]]

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

        table: list[RoutedModel] = []
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
        if removed:
            self._runtime.delete(removed)
        result = ApplyResult(added, removed, redeployed, updated, unchanged)
        logger.info(
            "catalog applied added=%s removed=%s redeployed=%s updated=%s",
            added,
            removed,
            redeployed,
            updated,
        )
        return result
