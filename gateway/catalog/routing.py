"""Model name or alias → the client that reaches that model's replicas."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol

from backends.base import EngineRequest, GenerationChunk, Task
from backends.token_count import PromptCounter
from gateway.catalog.schema import ModelEntry, Pricing
from gateway.errors import ModelNotFound


class ModelClient(Protocol):
    """Reaches one model's replicas. ``request.whole`` asks for the answer as a single merged chunk."""

    def generate(self, request: EngineRequest) -> AsyncIterator[GenerationChunk]: ...


@dataclass(frozen=True)
class RoutedModel:
    name: str
    family: str
    owned_by: str
    context_length: int
    created: int
    aliases: tuple[str, ...]
    client: ModelClient
    pricing: Pricing
    deployment: str
    chip: str
    pool: str
    task: Task = "chat"
    """What the model serves: chat and text completions, embeddings, or rerank."""
    prompt_counter: PromptCounter = PromptCounter()
    reasoning: str | None = None
    tool_parser: str | None = None
    """vLLM's tool parser for the model's tool-call format (None: none reads its calls; ``auto`` refused)."""
    constrained_decoding: bool = False
    """All its deployments enforce JSON schemas while decoding (response_format, forced tool choices)."""
    capacity: int = 256
    """Requests the model's replicas take at once, all deployments together."""
    max_queued: int = 256
    """Requests that may wait in the gateway beyond ``capacity`` before new ones are refused."""
    stall_timeout_s: float = 120.0
    """Longest wait for the replica's next chunk (a hung replica)."""

    @classmethod
    def from_entry(
        cls, entry: ModelEntry, *, client: ModelClient, deployment: str, prompt_counter: PromptCounter
    ) -> RoutedModel:
        """The routing view of a catalog entry served by ``client``."""
        return cls(
            name=entry.name,
            family=entry.family,
            owned_by=entry.owned_by,
            context_length=entry.context_length,
            created=int(time.time()),
            aliases=tuple(entry.aliases),
            client=client,
            pricing=entry.pricing,
            deployment=deployment,
            chip=entry.deployments[0].chip,
            pool=entry.deployments[0].pool,
            task=entry.task,
            prompt_counter=prompt_counter,
            reasoning=entry.reasoning,
            tool_parser=entry.tool_format if entry.constrained_decoding else None,
            constrained_decoding=entry.constrained_decoding,
            capacity=sum(d.capacity for d in entry.deployments),
            max_queued=sum(d.queue_limit for d in entry.deployments),
            stall_timeout_s=max(d.stall_timeout_s for d in entry.deployments),
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
