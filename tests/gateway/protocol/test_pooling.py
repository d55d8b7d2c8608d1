"""Embeddings and rerank bodies: every input shape OpenAI allows, the limits, and the response bodies."""

from __future__ import annotations

import base64
import re
import struct

import pytest
from pydantic import ValidationError

from backends.base import GenerationChunk, RerankRequest, TextPrompt, TokenPrompt, Usage, Vectors
from gateway.protocol.pooling import (
    MAX_INPUTS,
    EmbeddingBody,
    RerankBody,
    ScoreBody,
    embeddings_body,
    rerank_body,
    score_body,
)


def inputs(value: object) -> tuple[TextPrompt | TokenPrompt, ...]:
    return EmbeddingBody.model_validate({"model": "m", "input": value}).to_backend("r").inputs


def test_every_input_shape_becomes_backend_inputs() -> None:
    assert inputs("hi") == (TextPrompt("hi"),)
    assert inputs(["a", "b"]) == (TextPrompt("a"), TextPrompt("b"))
    assert inputs([1, 2, 3]) == (TokenPrompt((1, 2, 3)),)
    assert inputs([[1, 2], [3]]) == (TokenPrompt((1, 2)), TokenPrompt((3,)))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "input[0] is empty"),
        ([], "inputs must not be empty"),
        (["a", ""], "input[1] is empty"),
        ([[1], []], "input[1] is empty"),
        (["a"] * (MAX_INPUTS + 1), f"at most {MAX_INPUTS} inputs"),
        ([-1], "greater than or equal to 0"),
    ],
)
def test_bad_inputs_are_refused_at_the_edge(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        EmbeddingBody.model_validate({"model": "m", "input": value})


def test_encoding_format_and_dimensions_are_checked() -> None:
    with pytest.raises(ValidationError, match="encoding_format"):
        EmbeddingBody.model_validate({"model": "m", "input": "a", "encoding_format": "int8"})
    with pytest.raises(ValidationError, match="dimensions"):
        EmbeddingBody.model_validate({"model": "m", "input": "a", "dimensions": 0})
    body = EmbeddingBody.model_validate({"model": "m", "input": "a", "dimensions": 8})
    assert body.to_backend("r").dimensions == 8


def test_base64_is_little_endian_float32_of_the_same_vector() -> None:
    chunk = GenerationChunk(pooled=Vectors.of([[0.5, -1.25, 3.0]]), usage=Usage(4, 0))
    floats = embeddings_body(chunk, "m", "float")
    packed = embeddings_body(chunk, "m", "base64")
    raw = base64.b64decode(packed["data"][0]["embedding"])
    assert list(struct.unpack("<3f", raw)) == floats["data"][0]["embedding"] == [0.5, -1.25, 3.0]
    assert floats["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert floats["object"] == "list" and floats["data"][0]["object"] == "embedding"


def test_rerank_results_are_ordered_by_score_and_cut_at_top_n() -> None:
    body = RerankBody.model_validate(
        {
            "model": "m",
            "query": "q",
            "documents": ["a", {"text": "b"}, "c"],
            "top_n": 2,
            "return_documents": True,
        }
    )
    assert body.to_backend("r").documents == ("a", "b", "c")
    chunk = GenerationChunk(pooled=Vectors.of([[0.125], [0.875], [0.5]]), usage=Usage(30, 0))
    result = rerank_body(chunk, "rerank-1", "m", body)
    assert [(r["index"], r["document"]["text"]) for r in result["results"]] == [(1, "b"), (2, "c")]
    assert result["results"][0]["relevance_score"] == 0.875 and result["usage"]["prompt_tokens"] == 30


def test_rerank_needs_a_query_and_documents() -> None:
    with pytest.raises(ValidationError, match="documents must not be empty"):
        RerankBody.model_validate({"model": "m", "query": "q", "documents": []})
    with pytest.raises(ValidationError, match="query"):
        RerankBody.model_validate({"model": "m", "query": "", "documents": ["a"]})


def test_score_takes_one_query_against_each_text_2_in_order() -> None:
    body = ScoreBody.model_validate({"model": "m", "text_1": ["q"], "text_2": ["a", "b"]})
    assert body.to_backend("r") == RerankRequest("r", "q", ("a", "b"))
    assert ScoreBody.model_validate({"model": "m", "text_1": "q", "text_2": "a"}).to_backend(
        "r"
    ).documents == ("a",)
    chunk = GenerationChunk(pooled=Vectors.of([[0.25], [0.75]]), usage=Usage(9, 0))
    result = score_body(chunk, "score-1", "m", 5)
    assert [(d["index"], d["score"]) for d in result["data"]] == [(0, 0.25), (1, 0.75)]
    with pytest.raises(ValidationError, match="one non-empty text_1"):
        ScoreBody.model_validate({"model": "m", "text_1": ["q1", "q2"], "text_2": ["a"]})


def test_vectors_keep_float32_rows_and_their_little_endian_bytes() -> None:
    rows = [[0.1, -2.5, 3.0], [1e-8, 0.0, -0.0], [65504.0, 1.5, -7.25]]
    vectors = Vectors.of(rows)
    assert len(vectors) == 3 and vectors.dims == 3 and len(vectors.data) == 36
    assert vectors.rows() == [list(struct.unpack("<3f", struct.pack("<3f", *row))) for row in rows]
    assert vectors.row_bytes(2) == struct.pack("<3f", *rows[2])
    assert vectors.firsts() == [vectors.row(i)[0] for i in range(3)]
    assert Vectors.joined(3, [vectors.row_bytes(0), vectors.row_bytes(1), vectors.row_bytes(2)]) == vectors
    assert len(Vectors(0, b"")) == 0
