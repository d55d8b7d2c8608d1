"""The one interface every engine implements, and the plain data that crosses it.

Everything here is pure Python and picklable: requests and chunks travel between the gateway process and
Ray Serve replicas.

Streaming and usage contract (what the gateway relies on):

* ``Backend.generate(request)`` is an async iterator of ``GenerationChunk``.
* Bad input (a prompt longer than the context, an option the engine cannot honour) raises a
  ``backends.errors.InvalidRequest`` (or a subclass) *before the first chunk*, so the gateway can still
  answer with a 4xx status.
* Each chunk carries, per choice, only what is new since the previous chunk (a delta). A backend may merge
  several engine steps into one chunk; it never holds text back once it has it.
* Every choice ends with exactly one delta whose ``finish_reason`` is set (``"stop"``, ``"length"``, or
  ``"tool_calls"`` when the choice made tool calls; never ``"tool_calls"`` without one).
* Every chunk carries ``usage``: the exact prompt and completion token counts so far, from the engine's
  own tokenizer, for every request, streamed or not. The last chunk's usage is final; a stream the client
  cut off is billed from the last usage the gateway received.
* If the consumer stops iterating (client gone), the backend aborts the engine request.

Pooling models (catalog ``task: embed`` or ``rerank``) answer ``EmbeddingRequest`` / ``RerankRequest`` with
``PoolingBackend.pool``: one whole chunk whose ``pooled`` (``Vectors``) holds one vector per input (embed)
or one one-element row per document (rerank: its relevance score), and whose ``usage.prompt_tokens``
counts every token the engine ran. Bad input raises ``InvalidRequest`` before the engine runs anything.
``engine_request`` is the one dispatch both the replica and the in-gateway client use.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from backends.chips import BUILTIN_CHIPS, ChipKind
from backends.errors import InvalidRequest
from backends.tools import StructuredOutput, ToolCallDelta, ToolFunction, ToolPlan, merge_tool_calls

Role = Literal["system", "user", "assistant", "tool"]
Task = Literal["chat", "embed", "rerank"]
FinishReason = Literal["stop", "length", "abort", "tool_calls"]


@dataclass(frozen=True)
class ToolCall:
    """A call an assistant made earlier in the conversation (``arguments`` is JSON text)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    """On a ``tool`` message: the call this is the result of."""


@dataclass(frozen=True)
class ChatPrompt:
    """Messages the backend renders with the model's own chat template (with the tools, if any)."""

    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolFunction, ...] = ()


@dataclass(frozen=True)
class TextPrompt:
    text: str


@dataclass(frozen=True)
class TokenPrompt:
    token_ids: tuple[int, ...]


Prompt = ChatPrompt | TextPrompt | TokenPrompt


@dataclass(frozen=True)
class SamplingOptions:
    """Validated sampling options; ``None`` means the engine's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None
    """None: no logprobs. k >= 0: the sampled token's logprob plus the top k alternatives."""
    ignore_eos: bool = False
    """Keep generating past the end-of-sequence token until max_tokens (vLLM's extension)."""


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt: Prompt
    sampling: SamplingOptions = SamplingOptions()
    whole: bool = False
    """The caller uses only the whole answer (a non-streamed response): a backend may produce it as one
    chunk, e.g. by asking a remote server for a non-streamed answer."""
    structured: StructuredOutput | None = None
    """``response_format`` json_object / json_schema, enforced by constrained decoding."""
    tools: ToolPlan | None = None
    """Tools and ``tool_choice``; named and required choices are also enforced by constrained decoding
    (``backends.tools.tool_constraint``), and the answer's calls come back as ``ChoiceDelta.tool_calls``."""


@dataclass(frozen=True)
class EmbeddingRequest:
    """Embed each input (text or token ids); ``dimensions`` shortens the vectors where the model can."""

    request_id: str
    inputs: tuple[TextPrompt | TokenPrompt, ...]
    dimensions: int | None = None
    whole: bool = True


@dataclass(frozen=True)
class RerankRequest:
    """Score each document's relevance to the query with a cross-encoder."""

    request_id: str
    query: str
    documents: tuple[str, ...]
    whole: bool = True


PoolingRequest = EmbeddingRequest | RerankRequest
EngineRequest = GenerationRequest | EmbeddingRequest | RerankRequest


@dataclass(frozen=True)
class TopLogprob:
    token: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass
class ChoiceDelta:
    index: int
    text: str = ""
    finish_reason: FinishReason | None = None
    logprobs: list[TokenLogprob] | None = None
    tool_calls: list[ToolCallDelta] | None = None
    """Pieces of tool calls (see ``ToolCallDelta``); a choice that made calls ends with ``tool_calls``."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    """Prompt tokens served from the engine's prefix cache (included in ``prompt_tokens``)."""
    estimated: bool = False
    """The counts are the gateway's own estimate with the model's tokenizer, not the engine's (an upstream
    that reports no usage); billed all the same and marked so in the ledger."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Vectors:
    """A pooling model's rows (one vector per input, or one score per document) as float32 bytes,
    little-endian, row after row: pickled across the replica channel at a fraction of the cost of float
    lists, and already what OpenAI's ``encoding_format: base64`` sends."""

    dims: int
    data: bytes

    @staticmethod
    def of(rows: Iterable[Sequence[float]]) -> Vectors:
        packed = array("f")
        dims = 0
        for row in rows:
            dims = len(row)
            packed.extend(row)
        return Vectors(dims, _little_endian(packed).tobytes())

    @staticmethod
    def joined(dims: int, rows: Iterable[bytes]) -> Vectors:
        """Rows already packed as native float32 (a tensor's ``numpy().tobytes()``)."""
        data = b"".join(rows)
        return Vectors(
            dims, data if sys.byteorder == "little" else _little_endian(array("f", data)).tobytes()
        )

    def __len__(self) -> int:
        return len(self.data) // (4 * self.dims) if self.dims else 0

    def row_bytes(self, i: int) -> bytes:
        size = 4 * self.dims
        return self.data[i * size : (i + 1) * size]

    def row(self, i: int) -> list[float]:
        return _little_endian(array("f", self.row_bytes(i))).tolist()

    def rows(self) -> list[list[float]]:
        return [self.row(i) for i in range(len(self))]

    def firsts(self) -> list[float]:
        """The first value of every row (rerank scores)."""
        return [self.row(i)[0] for i in range(len(self))]


def _little_endian(values: array[float]) -> array[float]:
    """``values`` as little-endian (``array`` packs in the machine's order; a no-op on x86 and ARM)."""
    if sys.byteorder != "little":
        values.byteswap()
    return values


@dataclass
class GenerationChunk:
    choices: list[ChoiceDelta] = field(default_factory=list)
    usage: Usage | None = None
    pooled: Vectors | None = None
    """A pooling model's answer: one vector per input, or one ``[score]`` per document (see above)."""
    engine_seconds: float | None = None
    """On the first chunk a replica sends: how long its backend took to produce it (a whole answer: all
    of it), so the gateway can count everything else, the hop to the replica included, as overhead."""
    keepalive: bool = False
    """Carries nothing: a replica building a whole answer says its engine is still generating (at most
    every ``KEEPALIVE_S``), so the gateway's stall watchdog does not cut a long answer; never shown."""


def merge_chunks(chunks: Iterable[GenerationChunk]) -> GenerationChunk:
    """Fold consecutive deltas into one chunk (texts and logprobs appended per choice, last usage wins,
    the first ``engine_seconds`` stamp kept: it belongs to the first of the merged chunks).

    Used by replicas to coalesce what piled up while the consumer was busy, to build whole answers, and by
    both ends of the replica channel to merge what one frame or one inbox holds for a request.
    """
    by_index: dict[int, ChoiceDelta] = {}
    usage: Usage | None = None
    pooled: Vectors | None = None
    engine_seconds: float | None = None
    merged = keepalives = 0
    for chunk in chunks:
        merged, keepalives = merged + 1, keepalives + chunk.keepalive
        if engine_seconds is None:
            engine_seconds = chunk.engine_seconds
        for delta in chunk.choices:
            acc = by_index.get(delta.index)
            if acc is None:
                by_index[delta.index] = replace(
                    delta,
                    logprobs=None if delta.logprobs is None else list(delta.logprobs),
                    tool_calls=None if delta.tool_calls is None else merge_tool_calls([], delta.tool_calls),
                )
                continue
            acc.text += delta.text
            if delta.finish_reason is not None:
                acc.finish_reason = delta.finish_reason
            if delta.logprobs is not None:
                acc.logprobs = (acc.logprobs or []) + delta.logprobs
            if delta.tool_calls is not None:
                acc.tool_calls = merge_tool_calls(acc.tool_calls or [], delta.tool_calls)
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.pooled is not None:
            pooled = chunk.pooled
    return GenerationChunk(
        choices=[by_index[i] for i in sorted(by_index)],
        usage=usage,
        pooled=pooled,
        engine_seconds=engine_seconds,
        keepalive=0 < merged == keepalives,  # keepalives alone: still nothing to show
    )


@dataclass(frozen=True)
class ModelSpec:
    """What a replica needs to start a backend for one model."""

    name: str
    weights_path: str
    context_length: int
    chip: str
    engine: dict[str, Any] = field(default_factory=dict)
    chip_kind: ChipKind = BUILTIN_CHIPS["cpu"]
    """How the chip is reached (torch device, its runtime module, visible-devices variable)."""
    chips_per_replica: float = 0
    task: Task = "chat"
    """What the model does: generate text, embed inputs, or rerank documents."""


class Backend(Protocol):
    """A model engine inside one replica. See the module docstring for the streaming and usage contract."""

    async def start(self) -> None:
        """Load weights and start the engine; raise if the model cannot be served."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Stream the answer to one request (contract in the module docstring)."""

    async def check_health(self) -> None:
        """Raise if the engine can no longer serve."""

    def stop(self) -> None:
        """Release the engine and its processes (called when the replica shuts down)."""


class PoolingBackend(Protocol):
    """A backend that also serves pooling models (embeddings, rerank)."""

    async def pool(self, request: PoolingRequest) -> GenerationChunk:
        """The whole answer to one pooling request (contract in the module docstring)."""


async def _pooled(backend: Backend, request: PoolingRequest) -> AsyncIterator[GenerationChunk]:
    pool = getattr(backend, "pool", None)
    if pool is None:
        raise InvalidRequest(f"This model's backend ({type(backend).__name__}) serves no pooling requests.")
    yield await pool(request)


async def close_stream(chunks: AsyncIterator[Any]) -> None:
    """Close an async generator now, in the caller's task, so that its ``finally`` runs at once (an engine
    request aborted, a slot freed, an upstream connection released). One left open is closed later by a
    task that the event loop's async-generator hook schedules from the garbage collector: a wake-up of the
    loop for every generator of every request, and the backend sees its consumer go only then."""
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def engine_request(backend: Backend, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
    """The chunks that answer ``request``: generated text, or a pooling model's one whole chunk."""
    if isinstance(request, GenerationRequest):
        return backend.generate(request)
    return _pooled(backend, request)
