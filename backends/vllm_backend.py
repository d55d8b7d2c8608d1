"""vLLM engine (``AsyncLLM``) behind the backend interface: CUDA, CPU, and Ascend through vllm-ascend.

vLLM is imported in ``start()``, never at module load, so the catalog can be validated anywhere.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backends.base import (
    ChoiceDelta,
    EmbeddingRequest,
    GenerationChunk,
    GenerationRequest,
    ModelSpec,
    PoolingRequest,
    SamplingOptions,
    TokenLogprob,
    TopLogprob,
    Usage,
    close_stream,
)
from backends.chips import ChipUnavailable
from backends.errors import BackendUnavailable, EngineDead, InvalidRequest
from backends.prompting import PromptRenderer, completion_budget
from backends.tool_stream import ToolCallChoices, decoding_constraint, needs_stream
from backends.tools import StructuredOutput
from backends.vllm_attention import attention_backend
from backends.vllm_gloo import SHARED_GLOO_ENV
from backends.vllm_pooling import embed, rerank
from backends.vllm_single_process import (
    SINGLE_PROCESS_ENV,
    environment,
    single_process_worker,
    worker_omp_env,
)

logger = logging.getLogger(__name__)


class VLLMOptions(BaseModel):
    """Engine options a catalog deployment may set for the vLLM backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Weights and activation dtype."
    )
    max_model_len: int | None = Field(
        default=None, ge=16, description="Context length; defaults to the model's context_length."
    )
    max_num_seqs: int = Field(default=64, ge=1, description="Sequences batched at once.")
    kv_cache_gib: float | None = Field(
        default=None, gt=0, description="KV-cache size in GiB (fractions allowed, also on the CPU)."
    )
    gpu_memory_utilization: float | None = Field(
        default=None, gt=0, le=1, description="Fraction of accelerator memory vLLM may use."
    )
    tensor_parallel_size: int = Field(default=1, ge=1, description="Chips per model replica.")
    quantization: str | None = Field(default=None, description="vLLM quantization method.")
    enforce_eager: bool = Field(default=False, description="Skip graph capture / compilation.")
    max_logprobs: int = Field(default=20, ge=0, description="Largest top_logprobs accepted.")
    cpu_reserved_cores: int = Field(
        default=0, ge=0, description="CPU only: cores vLLM keeps free of its worker threads."
    )
    compact_json: bool = Field(
        default=True,
        description=(
            "Constrained JSON (response_format, forced tool calls) without whitespace between tokens. "
            "vLLM sets this per engine, not per request. With whitespace allowed, small models loop on "
            "blank lines inside objects until max_tokens (SmolLM2 on a zero-argument call)."
        ),
    )
    attention_backend: str | None = Field(
        default=None,
        pattern=r"^[A-Z][A-Z0-9_]*$",
        description=(
            "vLLM attention backend by its name (e.g. CPU_MLA, FLASH_ATTN); default: vLLM's choice, "
            "except CPU_MLA for a float32 MLA model on the CPU (see backends.vllm_attention)."
        ),
    )


PLATFORM_PLUGINS: dict[str, tuple[str, str]] = {
    # chip kind -> (module, pip package) of the vLLM platform plugin that adds the chip to vLLM
    "ascend": ("vllm_ascend", "vllm-ascend"),
}


def _finish_reason(reason: str | None) -> Literal["stop", "length", "abort"] | None:
    if reason in ("stop", "length", "abort"):
        return reason  # type: ignore[return-value]
    return None if reason is None else "stop"


ENGINE_DEAD = "The engine of this replica died; the replica is being replaced, retry."


@contextlib.contextmanager
def _engine_death_as(error: EngineDead) -> Iterator[None]:
    """vLLM's unrecoverable engine failure (its engine-core process gone) raised as ``error``."""
    from vllm.v1.engine.exceptions import EngineDeadError

    try:
        yield
    except EngineDeadError as exc:
        raise error from exc


async def _refusing_bad_constraints(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The engine's outputs; a constraint vLLM refuses (a schema feature its grammar backend cannot
    enforce) is a 400 naming vLLM's reason, raised before the first chunk."""
    from vllm.exceptions import VLLMClientError

    first = True
    try:
        async for output in stream:
            first = False
            yield output
    except (ValueError, VLLMClientError) as exc:
        if not first:
            raise
        raise InvalidRequest(
            f"The requested output constraint cannot be enforced: {exc}", param="response_format"
        ) from exc
    finally:
        await close_stream(stream)


class VLLMBackend:
    """One ``AsyncLLM`` engine serving one model."""

    Options = VLLMOptions

    def __init__(self, spec: ModelSpec, options: VLLMOptions) -> None:
        self.spec = spec
        self.options = options
        self.max_model_len = options.max_model_len or spec.context_length
        self._engine: Any = None
        self._tokenizer: Any = None
        self._renderer: PromptRenderer | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> VLLMBackend:
        return cls(spec, VLLMOptions.model_validate(spec.engine))

    @property
    def single_process(self) -> bool:
        """The model worker runs in the engine-core process (``backends.vllm_single_process``)."""
        options = self.options
        return single_process_worker(
            self.spec.chip_kind.name, options.tensor_parallel_size, options.cpu_reserved_cores
        )

    def _set_platform_env(self) -> None:
        """Point vLLM at the replica's chip: CPU settings, or the platform plugin a vendor chip needs."""
        kind = self.spec.chip_kind
        if kind.name == "cpu":
            os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
            os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(self.options.cpu_reserved_cores)
            # The AOT-compiled path recompiles on every start on the CPU; eager start is seconds.
            os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
            if self.single_process:
                os.environ.update(SINGLE_PROCESS_ENV)
            return
        plugin = PLATFORM_PLUGINS.get(kind.name)
        if plugin is not None and importlib.util.find_spec(plugin[0]) is None:
            raise ChipUnavailable(
                f"chip {kind.name!r} with the vllm backend needs vLLM's {plugin[1]!r} platform plugin on "
                f"the replica's node (pip install {plugin[1]}); vLLM loads it from its "
                "'vllm.platform_plugins' entry-point group"
            )

    def engine_kwargs(self) -> dict[str, Any]:
        """``AsyncEngineArgs`` for this deployment, from the catalog's engine options."""
        kwargs: dict[str, Any] = {
            "model": self.spec.weights_path,
            "served_model_name": self.spec.name,
            "dtype": self.options.dtype,
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.options.max_num_seqs,
            "tensor_parallel_size": self.options.tensor_parallel_size,
            "enforce_eager": self.options.enforce_eager,
            "max_logprobs": self.options.max_logprobs,
            "disable_log_stats": True,
        }
        if self.single_process:
            kwargs["distributed_executor_backend"] = "uni"
        if self.spec.task != "chat":
            kwargs["runner"] = "pooling"  # embeddings and cross-encoders: vLLM's pooling models
        if self.options.quantization:
            kwargs["quantization"] = self.options.quantization
        if self.options.gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = self.options.gpu_memory_utilization
        if self.options.kv_cache_gib is not None:
            # On the CPU too: VLLM_CPU_KVCACHE_SPACE takes whole GiB only (and would override this).
            kwargs["kv_cache_memory_bytes"] = int(self.options.kv_cache_gib * 2**30)
        backend = attention_backend(
            self.spec.chip_kind.name,
            self.options.dtype,
            self.spec.weights_path,
            self.options.attention_backend,
        )
        if backend is not None:
            kwargs["attention_backend"] = backend
        return kwargs

    async def start(self) -> None:
        self._set_platform_env()
        # The engine's processes build their gloo groups on one device: one 10 ms poller, not thirteen.
        os.environ[SHARED_GLOO_ENV] = "1"
        from vllm.config import StructuredOutputsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(**self.engine_kwargs())
        # xgrammar always (never a silent fallback to another grammar library): a schema feature it
        # cannot enforce is refused with a 400 naming it.
        args.structured_outputs_config = StructuredOutputsConfig(
            backend="xgrammar", disable_any_whitespace=self.options.compact_json
        )
        config = args.create_engine_config()
        # The engine core is spawned in AsyncLLM's constructor, with this process's environment then.
        with environment(worker_omp_env(config) if self.single_process else {}):
            self._engine = AsyncLLM.from_vllm_config(config, disable_log_stats=args.disable_log_stats)
        self._tokenizer = self._engine.get_tokenizer()
        self._renderer = PromptRenderer(self._tokenizer, len(self._tokenizer))
        if self.spec.task == "chat":  # a pooling model generates nothing to constrain
            await self._warm_structured_outputs()

    async def _warm_structured_outputs(self) -> None:
        """Build xgrammar's view of the vocabulary now, with one one-token constrained request, rather than
        in the first structured request: on a loaded 2-core machine that first request spent over 30 s
        silent (the catalog's stall limit) where later ones start in a second."""
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = SamplingParams(max_tokens=1, structured_outputs=StructuredOutputsParams(json_object=True))
        prompt = {"prompt_token_ids": [self._tokenizer.eos_token_id or 0]}
        started = time.perf_counter()
        async for _ in self._engine.generate(prompt, params, "maas-structured-outputs-warmup"):
            pass
        logger.info("structured outputs ready seconds=%.1f", time.perf_counter() - started)

    async def check_health(self) -> None:
        if self._engine is None:
            raise BackendUnavailable("engine not started")
        await self._engine.check_health()

    def stop(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    # -- request path -------------------------------------------------------------------------

    def _sampling_params(
        self, sampling: SamplingOptions, max_tokens: int, structured: StructuredOutput | None = None
    ) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        if sampling.logprobs is not None and sampling.logprobs > self.options.max_logprobs:
            raise InvalidRequest(
                f"At most {self.options.max_logprobs} top logprobs are supported.",
                param="top_logprobs",
            )
        return SamplingParams(
            n=sampling.n,
            temperature=1.0 if sampling.temperature is None else sampling.temperature,
            top_p=1.0 if sampling.top_p is None else sampling.top_p,
            seed=sampling.seed,
            stop=list(sampling.stop) or None,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            max_tokens=max_tokens,
            logprobs=sampling.logprobs,
            ignore_eos=sampling.ignore_eos,
            output_kind=RequestOutputKind.DELTA,
            structured_outputs=None
            if structured is None
            else StructuredOutputsParams(
                json=structured.json_schema, json_object=True if structured.json_object else None
            ),
        )

    def _logprobs(self, token_ids: Any, entries: Any, k: int) -> list[TokenLogprob]:
        result: list[TokenLogprob] = []
        for token_id, by_id in zip(token_ids, entries, strict=False):
            chosen = by_id.get(token_id)
            ranked = sorted(by_id.items(), key=lambda kv: kv[1].rank or 0)
            top = tuple(
                TopLogprob(self._token_text(tid, lp), float(lp.logprob))
                for tid, lp in ranked
                if lp.rank is not None and lp.rank <= k
            )
            result.append(
                TokenLogprob(
                    token=self._token_text(token_id, chosen),
                    logprob=float(chosen.logprob) if chosen is not None else float("-inf"),
                    top=top,
                )
            )
        return result

    def _token_text(self, token_id: int, entry: Any) -> str:
        if entry is not None and entry.decoded_token is not None:
            return str(entry.decoded_token)
        return str(self._tokenizer.decode([token_id]))

    def _running(self) -> tuple[Any, PromptRenderer]:
        if self._engine is None or self._renderer is None:
            raise BackendUnavailable("engine not started")
        if self._engine.errored:
            raise EngineDead(ENGINE_DEAD)
        return self._engine, self._renderer

    async def pool(self, request: PoolingRequest) -> GenerationChunk:
        """Embeddings or rerank scores from a pooling model (``backends.vllm_pooling``)."""
        engine, renderer = self._running()
        wanted = "embed" if isinstance(request, EmbeddingRequest) else "rerank"
        if self.spec.task != wanted:
            raise InvalidRequest(f"The model `{self.spec.name}` is a {self.spec.task} model.", param="model")
        with _engine_death_as(EngineDead(ENGINE_DEAD)):
            if isinstance(request, EmbeddingRequest):
                return await embed(engine, renderer, request, self.max_model_len)
            return await rerank(engine, renderer, request, self.max_model_len)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        self._running()
        if self.spec.task != "chat":
            raise InvalidRequest(f"The model `{self.spec.name}` is a {self.spec.task} model.", param="model")
        assert self._engine is not None and self._renderer is not None
        prompt_ids = await self._renderer.render(request.prompt)
        max_tokens = completion_budget(self.max_model_len, len(prompt_ids), request.sampling.max_tokens)
        params = self._sampling_params(request.sampling, max_tokens, decoding_constraint(request))
        k = request.sampling.logprobs
        tools = None
        if request.tools is not None and needs_stream(request.tools):
            tools = ToolCallChoices(request.tools, self._tokenizer, whole=request.whole)
        generated: dict[int, int] = {}
        cached = 0
        stream = self._engine.generate({"prompt_token_ids": prompt_ids}, params, request.request_id)
        with _engine_death_as(EngineDead(ENGINE_DEAD)):
            async with contextlib.aclosing(stream):
                async for output in _refusing_bad_constraints(stream):
                    deltas = []
                    for completion in output.outputs:
                        generated[completion.index] = generated.get(completion.index, 0) + len(
                            completion.token_ids
                        )
                        delta = ChoiceDelta(
                            index=completion.index,
                            text=completion.text,
                            finish_reason=_finish_reason(completion.finish_reason),
                            logprobs=None
                            if k is None or completion.logprobs is None
                            else self._logprobs(completion.token_ids, completion.logprobs, k),
                        )
                        deltas.append(delta if tools is None else tools.apply(delta, completion.token_ids))
                    cached = output.num_cached_tokens or cached  # vLLM may report it on the first output only
                    usage = Usage(len(prompt_ids), sum(generated.values()), cached)
                    yield GenerationChunk(choices=deltas, usage=usage)
