"""Bodies of POST /v1/embeddings (OpenAI) and POST /v1/rerank (the Cohere/Jina shape), validated at the
edge, turned into backend requests, and the response bodies built from the backend's pooled chunk."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backends.base import (
    EmbeddingRequest,
    GenerationChunk,
    RerankRequest,
    TextPrompt,
    TokenPrompt,
    Vectors,
)

MAX_INPUTS = 2048
"""Inputs (or documents) per request, as OpenAI allows; each one is an engine request."""

TokenId = Annotated[int, Field(ge=0, le=2**31 - 1)]
Json = dict[str, Any]


class _Request(BaseModel):
    # Unknown fields are ignored, as OpenAI-compatible servers do, so newer clients keep working.
    model_config = ConfigDict(extra="ignore")


def _check_count(count: int, what: str) -> None:
    if count == 0:
        raise ValueError(f"{what} must not be empty")
    if count > MAX_INPUTS:
        raise ValueError(f"at most {MAX_INPUTS} {what} are allowed per request, got {count}")


class EmbeddingBody(_Request):
    model: str = Field(min_length=1)
    input: str | list[str] | list[TokenId] | list[list[TokenId]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _inputs(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) else value
        _check_count(len(items), "inputs")
        for index, item in enumerate(items):
            if isinstance(item, str | list) and len(item) == 0:
                raise ValueError(f"input[{index}] is empty")
        return value

    def to_backend(self, request_id: str) -> EmbeddingRequest:
        value = [self.input] if isinstance(self.input, str) else self.input
        inputs: list[TextPrompt | TokenPrompt] = []
        if value and isinstance(value[0], int):  # one input as token ids
            inputs.append(TokenPrompt(tuple(t for t in value if isinstance(t, int))))
        for item in value:
            if isinstance(item, str):
                inputs.append(TextPrompt(item))
            elif isinstance(item, list):
                inputs.append(TokenPrompt(tuple(item)))
        return EmbeddingRequest(request_id, tuple(inputs), self.dimensions)


class RerankDocument(_Request):
    text: str


class RerankBody(_Request):
    model: str = Field(min_length=1)
    query: str = Field(min_length=1)
    documents: list[str | RerankDocument]
    top_n: Annotated[int, Field(ge=1)] | None = None
    return_documents: bool = False

    @field_validator("documents")
    @classmethod
    def _documents(cls, value: list[str | RerankDocument]) -> list[str | RerankDocument]:
        _check_count(len(value), "documents")
        return value

    def texts(self) -> tuple[str, ...]:
        return tuple(d if isinstance(d, str) else d.text for d in self.documents)

    def to_backend(self, request_id: str) -> RerankRequest:
        return RerankRequest(request_id, self.query, self.texts())


class ScoreBody(_Request):
    """vLLM's /v1/score shape, for one query: ``text_1`` against each ``text_2``."""

    model: str = Field(min_length=1)
    text_1: str | list[str]
    text_2: str | list[str]

    @field_validator("text_1")
    @classmethod
    def _one_query(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if len(texts) != 1 or not texts[0]:
            raise ValueError("send one non-empty text_1 per request (scored against every text_2)")
        return value

    @field_validator("text_2")
    @classmethod
    def _documents(cls, value: str | list[str]) -> str | list[str]:
        _check_count(1 if isinstance(value, str) else len(value), "text_2 items")
        return value

    def to_backend(self, request_id: str) -> RerankRequest:
        query = self.text_1 if isinstance(self.text_1, str) else self.text_1[0]
        documents = (self.text_2,) if isinstance(self.text_2, str) else tuple(self.text_2)
        return RerankRequest(request_id, query, documents)


def _encode(vectors: Vectors, i: int, encoding: str) -> list[float] | str:
    if encoding == "float":
        return vectors.row(i)
    return base64.b64encode(vectors.row_bytes(i)).decode("ascii")


def _usage(chunk: GenerationChunk) -> Json:
    tokens = chunk.usage.prompt_tokens if chunk.usage is not None else 0
    return {"prompt_tokens": tokens, "total_tokens": tokens}


def embeddings_body(chunk: GenerationChunk, model: str, encoding: str) -> Json:
    vectors = chunk.pooled or Vectors(0, b"")
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(vectors, i, encoding)}
        for i in range(len(vectors))
    ]
    return {"object": "list", "data": data, "model": model, "usage": _usage(chunk)}


def rerank_body(chunk: GenerationChunk, request_id: str, model: str, body: RerankBody) -> Json:
    texts = body.texts()
    scores = chunk.pooled.firsts() if chunk.pooled is not None else []
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)[: body.top_n]
    results: list[Json] = []
    for i in order:
        result: Json = {"index": i, "relevance_score": scores[i]}
        if body.return_documents:
            result["document"] = {"text": texts[i]}
        results.append(result)
    return {"id": request_id, "model": model, "results": results, "usage": _usage(chunk)}


def score_body(chunk: GenerationChunk, request_id: str, model: str, created: int) -> Json:
    scores = chunk.pooled.firsts() if chunk.pooled is not None else []
    data = [{"index": i, "object": "score", "score": score} for i, score in enumerate(scores)]
    return {
        "id": request_id,
        "object": "list",
        "created": created,
        "model": model,
        "data": data,
        "usage": _usage(chunk),
    }
