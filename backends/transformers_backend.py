"""transformers on any torch device (``cuda``, ``npu``, ``gcu``, ``cpu``, ...) behind the backend interface.

For models or chips vLLM does not cover. The model runs in ``TransformersEngine`` (continuous batching in
one engine thread); this class validates requests, renders prompts with the folder's chat template,
and turns the engine's per-step outputs into the chunks and exact usage of the backend contract.
torch and transformers are imported in ``start()``, never at module load.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backends.base import ChoiceDelta, GenerationChunk, GenerationRequest, ModelSpec, PoolingRequest, Usage
from backends.errors import BackendUnavailable, InvalidRequest
from backends.prompting import PromptRenderer, completion_budget
from backends.tool_stream import ToolCallChoices, decoding_constraint, needs_stream
from backends.transformers_grammar import Grammars
from backends.transformers_pooling import SentenceTransformersPooling

logger = logging.getLogger(__name__)


class TransformersOptions(BaseModel):
    """Engine options a catalog deployment may set for the transformers backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Weights dtype; auto: float32 on the CPU, the checkpoint's elsewhere."
    )
    max_model_len: int | None = Field(
        default=None, ge=16, description="Context length; defaults to the model's context_length."
    )
    max_batch_size: int = Field(default=8, ge=1, le=1024, description="Sequences decoded together.")
    attn_implementation: Literal["auto", "sdpa", "eager"] = Field(
        default="auto", description="Attention kernel; auto lets transformers pick what the architecture has."
    )
    max_logprobs: int = Field(default=20, ge=0, description="Largest top_logprobs accepted.")
    cpu_threads: int | None = Field(default=None, ge=1, description="CPU only: torch intra-op threads.")


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return sorted(ids)


class TransformersBackend:
    """One transformers model on one device, batching every request it is given."""

    Options = TransformersOptions

    def __init__(self, spec: ModelSpec, options: TransformersOptions) -> None:
        self.spec = spec
        self.options = options
        self.max_model_len = options.max_model_len or spec.context_length
        self._engine: Any = None
        self._tokenizer: Any = None
        self._renderer: PromptRenderer | None = None
        self._grammars: Grammars | None = None
        self._pooling: SentenceTransformersPooling | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> TransformersBackend:
        return cls(spec, TransformersOptions.model_validate(spec.engine))

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from backends.torch_device import torch_device
        from backends.transformers_engine import TransformersEngine

        device = torch_device(self.spec.chip_kind)
        if device.type == "cpu" and self.options.cpu_threads:
            torch.set_num_threads(self.options.cpu_threads)
        dtype: Any = getattr(torch, self.options.dtype) if self.options.dtype != "auto" else "auto"
        if dtype == "auto" and device.type == "cpu":
            dtype = torch.float32
        if self.spec.task != "chat":  # embeddings or rerank: sentence-transformers on the same device
            pooling = SentenceTransformersPooling(
                self.spec, device, dtype, self.max_model_len, self.options.max_batch_size
            )
            pooling.load()
            self._pooling = pooling
            logger.info("sentence-transformers model ready model=%s device=%s", self.spec.name, device)
            return
        self._tokenizer = AutoTokenizer.from_pretrained(self.spec.weights_path)
        extra: dict[str, Any] = {}
        if self.options.attn_implementation != "auto":
            extra["attn_implementation"] = self.options.attn_implementation
        model = AutoModelForCausalLM.from_pretrained(self.spec.weights_path, dtype=dtype, **extra)
        model.to(device).eval()
        self._engine = TransformersEngine(
            model,
            self._tokenizer,
            device,
            max_batch_size=self.options.max_batch_size,
            eos_token_ids=_eos_ids(model, self._tokenizer),
        )
        self._renderer = PromptRenderer(self._tokenizer, self._engine.vocab_size)
        logger.info(
            "transformers engine ready model=%s device=%s dtype=%s", self.spec.name, device, model.dtype
        )

    def _grammars_for(self, engine: Any) -> Grammars:
        """The model's grammar compiler, made at the first constrained request (xgrammar reads the whole
        vocabulary once, which a model never asked for JSON need not pay)."""
        if self._grammars is None:
            self._grammars = Grammars(self._tokenizer, engine.vocab_size, sorted(engine.eos_token_ids))
        return self._grammars

    async def check_health(self) -> None:
        if self._pooling is not None:
            return
        if self._engine is None or not self._engine.alive:
            raise BackendUnavailable("The engine of this replica has failed.")

    def stop(self) -> None:
        if self._pooling is not None:
            self._pooling.close()
            self._pooling = None
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._engine is not None:
            self._engine.stop()
            self._engine = None

    def _validate(self, request: GenerationRequest) -> None:
        if request.tools is not None and request.tools.choice == "auto":
            # Reading calls a model writes on its own takes vLLM's tool parsers, which this backend (for
            # chips without vLLM) does not load; forced calls and response formats are enforced here.
            raise InvalidRequest(
                "tool_choice 'auto' is not supported by this model's transformers backend; use tool_choice "
                "'required' or name a function.",
                param="tool_choice",
            )
        sampling = request.sampling
        if sampling.n > self.options.max_batch_size:
            raise InvalidRequest(
                f"n={sampling.n} is more than this model serves at once ({self.options.max_batch_size}).",
                param="n",
            )
        if sampling.logprobs is not None and sampling.logprobs > self.options.max_logprobs:
            raise InvalidRequest(
                f"At most {self.options.max_logprobs} top logprobs are supported.", param="top_logprobs"
            )

    async def pool(self, request: PoolingRequest) -> GenerationChunk:
        """Embeddings or rerank scores (``backends.transformers_pooling``)."""
        if self._pooling is None:
            raise InvalidRequest(f"The model `{self.spec.name}` is a {self.spec.task} model.", param="model")
        return await self._pooling.pool(request)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        from backends.transformers_engine import EngineRequest, SeqOutput

        if self._pooling is not None:
            raise InvalidRequest(f"The model `{self.spec.name}` is a {self.spec.task} model.", param="model")
        engine, renderer = self._engine, self._renderer
        if engine is None or renderer is None or not engine.alive:
            raise BackendUnavailable("The engine of this replica has failed.")
        self._validate(request)
        prompt_ids = await renderer.render(request.prompt)
        max_tokens = completion_budget(self.max_model_len, len(prompt_ids), request.sampling.max_tokens)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[SeqOutput] | BaseException] = asyncio.Queue()

        def on_step(item: list[SeqOutput] | BaseException) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        constraint = decoding_constraint(request)
        grammar = None if constraint is None else self._grammars_for(engine).compile(constraint)
        plan = request.tools
        forced = plan is not None and needs_stream(plan)
        tools = ToolCallChoices(plan, whole=request.whole) if plan is not None and forced else None
        job = EngineRequest(
            request.request_id, prompt_ids, request.sampling, max_tokens, on_step, grammar=grammar
        )
        engine.submit(job)
        open_choices = set(range(request.sampling.n))
        generated = 0
        try:
            while open_choices:
                items = [await queue.get()]
                while not queue.empty():  # steps that piled up go out as one chunk
                    items.append(queue.get_nowait())
                deltas: dict[int, ChoiceDelta] = {}
                for item in items:
                    if isinstance(item, BaseException):
                        raise BackendUnavailable("The engine of this replica has failed.") from item
                    for out in item:
                        generated += 1
                        delta = deltas.setdefault(out.choice, ChoiceDelta(index=out.choice))
                        delta.text += out.text
                        if out.logprob is not None:
                            delta.logprobs = [*(delta.logprobs or []), out.logprob]
                        if out.finish_reason is not None:
                            delta.finish_reason = out.finish_reason
                            open_choices.discard(out.choice)
                usage = Usage(len(prompt_ids), generated)
                choices = [deltas[i] if tools is None else tools.apply(deltas[i]) for i in sorted(deltas)]
                yield GenerationChunk(choices=choices, usage=usage)
        finally:
            if open_choices:  # the consumer left early: free the batch slots
                job.cancelled.set()
                engine.wake()
