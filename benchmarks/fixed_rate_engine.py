"""A fake engine for overhead measurement: emits tokens at a fixed rate, no model, no weights.

Named in a catalog as ``backend: benchmarks.fixed_rate_engine:FixedRateBackend``. It behaves like
``benchmarks.mock_upstream``, which takes the same options: same token text, same count, same timing (the
first token at once, then one every ``inter_token_s(count)``). So the mock reached directly and the
gateway's replica path on this engine do the same work apart from what the gateway adds. Ray workers
import it, so the ``maas serve`` process needs the repository root on ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pydantic import BaseModel, ConfigDict, Field

from backends.base import ChoiceDelta, GenerationChunk, GenerationRequest, ModelSpec, Usage

TOKEN = " tok"
PROMPT_TOKENS = 8


class FixedRateOptions(BaseModel):
    """Engine options of the fixed-rate engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: int = Field(
        default=16, ge=1, description="Tokens per answer when the request sets no max_tokens."
    )
    inter_token_ms: float = Field(default=0.0, ge=0, description="Delay between consecutive tokens.")
    pace_ms_by_tokens: dict[int, float] = Field(
        default_factory=dict,
        description="Answers of exactly this many tokens use this delay instead (one deployment serves "
        "both an unpaced and a paced scenario).",
    )

    def inter_token_s(self, count: int) -> float:
        """Seconds between consecutive tokens of an answer of ``count`` tokens."""
        return self.pace_ms_by_tokens.get(count, self.inter_token_ms) / 1000


class FixedRateBackend:
    """Backend interface (``backends.base.Backend``) over a timer instead of a model."""

    Options = FixedRateOptions

    def __init__(self, spec: ModelSpec, options: FixedRateOptions) -> None:
        self.spec = spec
        self.options = options
        self._started = False

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> FixedRateBackend:
        return cls(spec, FixedRateOptions.model_validate(spec.engine))

    async def start(self) -> None:
        self._started = True

    async def check_health(self) -> None:
        if not self._started:
            raise RuntimeError("fixed-rate engine not started")

    def stop(self) -> None:
        self._started = False

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        count = request.sampling.max_tokens or self.options.tokens
        delay = self.options.inter_token_s(count)
        n = request.sampling.n
        for i in range(count):
            if i:
                await asyncio.sleep(delay)  # sleep(0) still yields to the loop, as a real engine does
            last = i == count - 1
            yield GenerationChunk(
                choices=[
                    ChoiceDelta(index=c, text=TOKEN, finish_reason="length" if last else None)
                    for c in range(n)
                ],
                usage=Usage(PROMPT_TOKENS, (i + 1) * n),  # counts so far, final on the last chunk
            )
