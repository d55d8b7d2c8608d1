"""A third-party backend, as a chip vendor would ship it: one package, one entry point, no gateway change.

Installed by the tests as a wheel (entry point ``dummy`` in the ``maas.backends`` group). It answers with
what the replica sees: its chip, the chip's visible-devices variable and its process id, one word per
chunk, with exact usage counted in words.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from pydantic import BaseModel, ConfigDict

from backends.base import (
    ChatPrompt,
    ChoiceDelta,
    GenerationChunk,
    GenerationRequest,
    ModelSpec,
    TextPrompt,
    Usage,
)


class DummyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    greeting: str = "hello from the dummy backend"


class DummyBackend:
    Options = DummyOptions

    def __init__(self, spec: ModelSpec, options: DummyOptions) -> None:
        self.spec = spec
        self.options = options

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> DummyBackend:
        return cls(spec, DummyOptions.model_validate(spec.engine))

    async def start(self) -> None:
        return None

    async def check_health(self) -> None:
        return None

    def stop(self) -> None:
        return None

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        prompt = request.prompt
        if isinstance(prompt, ChatPrompt):
            prompt_words = sum(len(m.content.split()) for m in prompt.messages)
        elif isinstance(prompt, TextPrompt):
            prompt_words = len(prompt.text.split())
        else:
            prompt_words = len(prompt.token_ids)
        variable = self.spec.chip_kind.visible_devices_env or "NONE"
        words = [
            *self.options.greeting.split(),
            f"chip={self.spec.chip}",
            f"{variable}={os.environ.get(variable, '')}",
            f"pid={os.getpid()}",
        ]
        for i, word in enumerate(words):
            last = i == len(words) - 1
            delta = ChoiceDelta(0, (" " if i else "") + word, "stop" if last else None)
            yield GenerationChunk([delta], Usage(max(prompt_words, 1), i + 1))
