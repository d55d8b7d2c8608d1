"""Model name or alias → the routes (one per deployment) that reach that model's replicas."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from backends.base import EngineRequest, GenerationChunk, Task
from backends.token_count import PromptCounter
from gateway.catalog.policy import Routing
from gateway.catalog.schema import Catalog, Deployment, ModelEntry, Pricing
from gateway.errors import ModelNotFound


class ModelClient(Protocol):
    """Reaches one model's replicas. ``request.whole`` asks for the answer as a single merged chunk."""

    def generate(self, request: EngineRequest) -> AsyncIterator[GenerationChunk]: ...


@dataclass(frozen=True, slots=True)
class DeploymentInfo:
    """A deployment's terms for placement, read once from the catalog: its name, its pool, whether that
    pool is owned, its marginal cost per 1M input and output tokens (``math.inf`` where unknown) and its
    weight."""

    name: str
    pool: str
    owned: bool = True
    input_cost: float = 0.0
    output_cost: float = 0.0
    weight: float = 1.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return input_tokens * self.input_cost + output_tokens * self.output_cost

    @staticmethod
    def terms(name: str, deployment: Deployment, catalog: Catalog | None) -> dict[str, Any]:
        """The fields of ``deployment``'s terms. Without declared pools, every deployment counts as owned
        at no cost (placement then goes by load and order)."""
        pool = None if catalog is None else catalog.pool(deployment.pool)
        cost = None if catalog is None else catalog.token_cost(deployment, marginal=True)
        unknown = math.inf if catalog is not None and catalog.pools else 0.0
        return {
            "name": name,
            "pool": deployment.pool,
            "owned": pool is None or pool.kind == "owned",
            "input_cost": float(cost.input_per_million) if cost else unknown,
            "output_cost": float(cost.output_per_million) if cost else unknown,
            "weight": deployment.weight or 1.0,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Route(DeploymentInfo):
    """One deployment of a model as the gateway reaches it: its terms, its client and its limits."""

    client: ModelClient
    chip: str
    capacity: int = 256
    """Requests its replicas take at once (replicas x max_ongoing_requests; autoscaling: at most)."""
    queue_limit: int = 256
    """Requests that may wait in the gateway for one of its slots."""
    stall_timeout_s: float = 120.0
    """Longest wait for the replica's next chunk (a hung replica)."""
    start_wait_s: float | None = None
    """Longest wait for a replica to start when the deployment scaled to zero (None: it does not)."""
    constrained: bool = False
    """It enforces response_format and forced tool choices (``Deployment.enforces_constraints``)."""
    auto_tools: bool = False
    """It reads the calls a model writes on its own (``Deployment.reads_auto_tool_calls``)."""

    def serves(self, request: EngineRequest) -> bool:
        """Whether this deployment can do what ``request`` asks of tools and response formats."""
        tools = getattr(request, "tools", None)
        if getattr(request, "structured", None) is not None or (tools is not None and tools.forced):
            return self.constrained
        return tools is None or tools.choice != "auto" or self.auto_tools

    @classmethod
    def of(
        cls,
        name: str,
        deployment: Deployment,
        client: ModelClient,
        catalog: Catalog | None = None,
        tool_format: str | None = None,
    ) -> Route:
        """The route to ``deployment`` through ``client``; its pool's terms come from ``catalog``;
        ``tool_format``: the model's tool parser for ``auto``."""
        return cls(
            **DeploymentInfo.terms(name, deployment, catalog),
            client=client,
            chip=deployment.chip,
            capacity=deployment.capacity,
            queue_limit=deployment.queue_limit,
            stall_timeout_s=deployment.stall_timeout_s,
            start_wait_s=deployment.start_wait_s,
            constrained=deployment.enforces_constraints,
            auto_tools=deployment.reads_auto_tool_calls(tool_format),
        )


@dataclass(frozen=True)
class RoutedModel:
    name: str
    family: str
    owned_by: str
    context_length: int
    created: int
    aliases: tuple[str, ...]
    routes: tuple[Route, ...]
    """Its deployments, in catalog order; placement picks among them per request."""
    pricing: Pricing
    routing: Routing = Routing()
    task: Task = "chat"
    """What the model serves: chat and text completions, embeddings, or rerank."""
    prompt_counter: PromptCounter = PromptCounter()
    reasoning: str | None = None
    tool_parser: str | None = None
    """vLLM's tool parser for the model's tool-call format (None: none reads its calls; ``auto`` refused)."""
    constrained_decoding: bool = False
    """Some deployment enforces JSON schemas (response_format, forced tool choices); requests that need it
    are placed on those alone (``Route.serves``)."""
    tool_choice_auto: bool = False
    """Some deployment reads the calls a model writes on its own (``tool_choice: "auto"``)."""

    @property
    def capacity(self) -> int:
        """Requests the model's replicas take at once, all deployments together."""
        return sum(r.capacity for r in self.routes)

    @property
    def max_queued(self) -> int:
        """Requests that may wait in the gateway beyond ``capacity``, all deployments together."""
        return sum(r.queue_limit for r in self.routes)

    @classmethod
    def from_entry(
        cls,
        entry: ModelEntry,
        *,
        clients: Sequence[ModelClient],
        prompt_counter: PromptCounter,
        catalog: Catalog | None = None,
    ) -> RoutedModel:
        """The routing view of a catalog entry whose deployments are reached through ``clients`` (one
        each, in order); ``catalog`` gives their pools' terms."""
        if len(clients) != len(entry.deployments):
            raise ValueError(f"{entry.name}: {len(entry.deployments)} deployments, {len(clients)} clients")
        routes = tuple(
            Route.of(name, deployment, client, catalog, entry.tool_format)
            for name, deployment, client in zip(
                entry.deployment_names(), entry.deployments, clients, strict=True
            )
        )
        return cls(
            name=entry.name,
            family=entry.family,
            owned_by=entry.owned_by,
            context_length=entry.context_length,
            created=int(time.time()),
            aliases=tuple(entry.aliases),
            routes=routes,
            pricing=entry.pricing,
            routing=entry.routing,
            task=entry.task,
            prompt_counter=prompt_counter,
            reasoning=entry.reasoning,
            tool_parser=entry.tool_format,
            constrained_decoding=any(r.constrained for r in routes),
            tool_choice_auto=any(r.auto_tools for r in routes),
        )


class ModelRouter:
    """Resolves the ``model`` field of a request; the table is replaced whole, never edited in place."""

    def __init__(self, models: Iterable[RoutedModel] = ()) -> None:
        self._models: dict[str, RoutedModel] = {}
        self._names: dict[str, RoutedModel] = {}
        self.replace(models)

    def replace(self, models: Iterable[RoutedModel]) -> None:
        by_name = {m.name: m for m in models}
        names = dict(by_name)
        for model in by_name.values():
            for alias in model.aliases:
                names[alias] = model
        self._models, self._names = by_name, names

    def get(self, name: str) -> RoutedModel | None:
        """The model called exactly ``name`` (no aliases)."""
        return self._models.get(name)

    def models(self) -> list[RoutedModel]:
        return list(self._models.values())

    def resolve(self, name: str) -> RoutedModel:
        model = self._names.get(name)
        if model is None:
            available = ", ".join(sorted(self._models)) or "none"
            raise ModelNotFound(
                f"The model `{name}` does not exist. Available models: {available}.",
                param="model",
            )
        return model
