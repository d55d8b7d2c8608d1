"""Pooling models (embeddings, rerank) with sentence-transformers on any torch device: the transformers
backend's answer to ``task: embed`` and ``task: rerank``.

A ``SentenceTransformer`` (embed) or ``CrossEncoder`` (rerank) loaded from the model folder runs every
request in one thread of its own, in batches; inputs are tokenized and checked first (nothing runs for a
refused request). sentence-transformers and torch are imported in ``load``, in the replica only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

from backends.base import (
    EmbeddingRequest,
    GenerationChunk,
    ModelSpec,
    RerankRequest,
    TextPrompt,
    Usage,
    Vectors,
)
from backends.errors import InvalidRequest
from backends.vllm_pooling import check_dimensions, check_length


class SentenceTransformersPooling:
    """One sentence-transformers model on one device."""

    def __init__(self, spec: ModelSpec, device: Any, dtype: Any, max_model_len: int, batch_size: int) -> None:
        self.spec = spec
        self.device = device
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.batch_size = batch_size
        self._model: Any = None
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="pool")

    def load(self) -> None:
        from sentence_transformers import CrossEncoder, SentenceTransformer

        kwargs: dict[str, Any] = {"device": str(self.device), "local_files_only": True}
        if self.dtype != "auto":
            kwargs["model_kwargs"] = {"dtype": self.dtype}
        if self.spec.task == "embed":
            self._model = SentenceTransformer(self.spec.weights_path, **kwargs)
        else:
            self._model = CrossEncoder(self.spec.weights_path, **kwargs)
        self._model.eval()

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
        self._model = None

    async def _call(self, fn: Callable[[Any], GenerationChunk], request: Any) -> GenerationChunk:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, request)

    async def pool(self, request: EmbeddingRequest | RerankRequest) -> GenerationChunk:
        if self._model is None:
            raise InvalidRequest("engine not started")
        wanted = "embed" if isinstance(request, EmbeddingRequest) else "rerank"
        if self.spec.task != wanted:
            raise InvalidRequest(f"The model `{self.spec.name}` is a {self.spec.task} model.", param="model")
        if isinstance(request, EmbeddingRequest):
            return await self._call(self._embed, request)
        return await self._call(self._rerank, request)

    def _embed(self, request: EmbeddingRequest) -> GenerationChunk:
        import torch

        model = self._model
        size = int(model.get_embedding_dimension())
        check_dimensions(request.dimensions, size, matryoshka=False)
        tokenizer = model.tokenizer
        vocab = len(tokenizer)
        ids: list[list[int]] = []
        for index, item in enumerate(request.inputs):
            if isinstance(item, TextPrompt):
                row = list(tokenizer(item.text)["input_ids"]) if item.text else []
            else:
                row = list(item.token_ids)
                bad = [t for t in row if not 0 <= t < vocab]
                if bad:
                    raise InvalidRequest(
                        f"Token id {bad[0]} is out of range for this model's vocabulary (0..{vocab - 1}).",
                        param="input",
                    )
            check_length(index, len(row), self.max_model_len, "input")
            ids.append(row)
        vectors: list[bytes] = []
        size = 0
        with torch.inference_mode():
            for start in range(0, len(ids), self.batch_size):
                batch = tokenizer.pad(
                    {"input_ids": ids[start : start + self.batch_size]}, return_tensors="pt"
                )
                features = {k: v.to(model.device) for k, v in batch.items()}
                if "token_type_ids" in tokenizer.model_input_names and "token_type_ids" not in features:
                    features["token_type_ids"] = torch.zeros_like(features["input_ids"])
                out = model(features)["sentence_embedding"]
                rows = out.float().cpu().contiguous()
                size = int(rows.shape[-1])
                vectors.append(rows.numpy().tobytes())
        return GenerationChunk(pooled=Vectors.joined(size, vectors), usage=Usage(sum(len(r) for r in ids), 0))

    def _rerank(self, request: RerankRequest) -> GenerationChunk:
        if not request.query:
            raise InvalidRequest("query is empty.", param="query")
        tokenizer = self._model.tokenizer
        tokens = 0
        for index, document in enumerate(request.documents):
            count = len(tokenizer(request.query, document)["input_ids"])
            check_length(index, count, self.max_model_len, "documents")
            tokens += count
        pairs = [(request.query, d) for d in request.documents]
        scores = self._model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False)
        return GenerationChunk(pooled=Vectors.of([float(s)] for s in scores), usage=Usage(tokens, 0))
