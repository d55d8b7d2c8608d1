"""Pooling requests (embeddings, rerank) on a vLLM engine started with ``runner="pooling"``.

Every input (or query-document pair) is one engine request; they run concurrently, so vLLM batches them
as it batches chat requests. Inputs are checked before the first one is sent: nothing runs (and nothing is
billed) for a request that is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from backends.base import EmbeddingRequest, GenerationChunk, RerankRequest, TextPrompt, Usage, Vectors
from backends.errors import ContextLengthExceeded, InvalidRequest
from backends.prompting import PromptRenderer


def check_dimensions(requested: int | None, size: int, matryoshka: bool) -> int | None:
    """``dimensions`` as the engine takes it: ``None`` for the model's own size, else a shorter size
    the model was trained for; anything else is refused."""
    if requested is None or requested == size:
        return None
    if requested > size:
        raise InvalidRequest(
            f"dimensions {requested} is larger than this model's embedding size ({size}).", param="dimensions"
        )
    if not matryoshka:
        raise InvalidRequest(
            f"This model cannot shorten its embeddings: dimensions must be {size} or left out.",
            param="dimensions",
        )
    return requested


def check_length(index: int, tokens: int, limit: int, param: str) -> None:
    if tokens == 0:
        raise InvalidRequest(f"{param}[{index}] is empty.", param=param)
    if tokens > limit:
        raise ContextLengthExceeded(
            f"This model's maximum input length is {limit} tokens. However, {param}[{index}] has {tokens} "
            "tokens. Please shorten it.",
            param=param,
        )


async def _run(engine: Any, prompt: dict[str, Any], params: Any, request_id: str) -> Any:
    last = None
    stream = engine.encode(prompt, params, request_id)
    async with contextlib.aclosing(stream):
        async for output in stream:
            last = output
    return last


async def embed(
    engine: Any, renderer: PromptRenderer, request: EmbeddingRequest, limit: int
) -> GenerationChunk:
    from vllm import PoolingParams

    config = engine.model_config
    dimensions = check_dimensions(request.dimensions, int(config.get_hidden_size()), config.is_matryoshka)
    prompts = await renderer.render_many(list(request.inputs))  # one hop to the tokenizer's thread
    for index, (item, ids) in enumerate(zip(request.inputs, prompts, strict=True)):
        empty = isinstance(item, TextPrompt) and not item.text  # a tokenizer still adds [CLS] [SEP]
        check_length(index, 0 if empty else len(ids), limit, "input")
    params = PoolingParams(task="embed", dimensions=dimensions)
    outputs = await asyncio.gather(
        *(
            _run(engine, {"prompt_token_ids": ids}, params, f"{request.request_id}-{i}")
            for i, ids in enumerate(prompts)
        )
    )
    tensors = [output.outputs.data.float().reshape(-1) for output in outputs]
    vectors = Vectors.joined(
        int(tensors[0].numel()) if tensors else 0, (t.numpy().tobytes() for t in tensors)
    )
    usage = Usage(prompt_tokens=sum(len(ids) for ids in prompts), completion_tokens=0)
    return GenerationChunk(pooled=vectors, usage=usage)


def _pair(tokenizer: Any, query: str, document: str) -> tuple[list[int], int]:
    """A cross-encoder's input for one pair: token ids, and where the second segment starts."""
    encoded = tokenizer(text=query, text_pair=document)
    ids = list(encoded["input_ids"])
    types = encoded.get("token_type_ids")
    start = types.index(1) if types and 1 in types else len(ids)
    return ids, start


async def rerank(
    engine: Any, renderer: PromptRenderer, request: RerankRequest, limit: int
) -> GenerationChunk:
    from vllm import PoolingParams

    if not request.query:
        raise InvalidRequest("query is empty.", param="query")
    pairs = await renderer.run(
        lambda tokenizer: [_pair(tokenizer, request.query, d) for d in request.documents]
    )
    for index, (ids, _) in enumerate(pairs):
        check_length(index, len(ids), limit, "documents")
    outputs = await asyncio.gather(
        *(
            _run(
                engine,
                {"prompt_token_ids": ids},
                PoolingParams(task="classify", extra_kwargs={"compressed_token_type_ids": start}),
                f"{request.request_id}-{i}",
            )
            for i, (ids, start) in enumerate(pairs)
        )
    )
    scores = Vectors.of([float(output.outputs.data.float().reshape(-1)[0])] for output in outputs)
    usage = Usage(prompt_tokens=sum(len(ids) for ids, _ in pairs), completion_tokens=0)
    return GenerationChunk(pooled=scores, usage=usage)
