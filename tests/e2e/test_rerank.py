"""/v1/rerank through the real gateway: a tiny random BERT cross-encoder built here (with MiniLM's real
tokenizer) and served by vLLM's pooling runner orders documents as sentence-transformers' CrossEncoder,
run directly on the same folder, does; usage equals the ledger; wrong-task requests are 400s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from gateway.catalog.model_prep import prepare_model
from gateway.catalog.schema import load_catalog
from tests.conftest import REPO
from tests.e2e.conftest import EMBED_MODEL, Gateway, create_key, gateway_env, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e

RERANKER = "tiny-reranker"
QUERY = "what is the capital of france"
DOCUMENTS = [
    "paris is the capital of france",
    "the dog sleeps by the fire",
    "berlin is a city in germany",
    "capital letters are big",
    "france has many cheeses",
    "a river runs through the old town",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backends.tiny_checkpoints import build_tiny_cross_encoder

    embed = load_catalog(REPO / "models.yaml").find(EMBED_MODEL)
    assert embed is not None
    tokenizer_dir = prepare_model(embed, REPO / ".cache" / "models", lambda _: None)
    out = tmp_path_factory.mktemp("reranker") / "tiny-cross-encoder"
    build_tiny_cross_encoder(Path(tokenizer_dir), out, seed=3)
    return out


@pytest.fixture(scope="module")
def reranker(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Iterator[Gateway]:
    model = {
        "name": RERANKER,
        "family": "other",
        "task": "rerank",
        "context_length": 512,
        "pricing": {"input_per_million": 0.02},
        "weights": {"kind": "local", "path": str(checkpoint)},
        "deployments": [
            {
                "backend": "vllm",
                "max_ongoing_requests": 8,
                "engine": {"dtype": "float32", "enforce_eager": True, "kv_cache_gib": 1, "max_num_seqs": 16},
            }
        ],
    }
    env = gateway_env(tmp_path_factory, "maas-rerank")
    catalog = Path(env["MAAS_HOME"]) / "rerank.yaml"
    catalog.write_text(yaml.safe_dump({"models": [model]}))
    gw = start_gateway(env, create_key(env, "rerank"), config=catalog)
    try:
        yield gw
    finally:
        stop_gateway(gw)


@pytest.fixture(scope="module")
def direct_scores(checkpoint: Path) -> list[float]:
    from sentence_transformers import CrossEncoder

    encoder = CrossEncoder(str(checkpoint), device="cpu", local_files_only=True)
    return [float(s) for s in encoder.predict([(QUERY, d) for d in DOCUMENTS])]


def rerank(gateway: Gateway, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or gateway.key}"}
    return httpx.post(f"{gateway.base_url}/v1/rerank", json=body, headers=headers, timeout=60)


def test_rerank_orders_documents_as_the_cross_encoder_does(
    reranker: Gateway, checkpoint: Path, direct_scores: list[float]
) -> None:
    key = reranker.create_key("rerank-ledger")
    response = rerank(reranker, {"model": RERANKER, "query": QUERY, "documents": DOCUMENTS}, key=key)
    assert response.status_code == 200, response.text
    body = response.json()
    expected_order = sorted(range(len(DOCUMENTS)), key=lambda i: direct_scores[i], reverse=True)
    assert [r["index"] for r in body["results"]] == expected_order
    for result in body["results"]:
        assert result["relevance_score"] == pytest.approx(direct_scores[result["index"]], abs=1e-4)
        assert "document" not in result
    assert len(set(direct_scores)) == len(DOCUMENTS)  # distinct scores: the order is a real check

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    tokens = sum(len(tokenizer(QUERY, d)["input_ids"]) for d in DOCUMENTS)
    assert body["usage"]["prompt_tokens"] == tokens
    [row] = reranker.usage_rows(key)
    assert row["model"] == RERANKER and row["prompt_tokens"] == tokens and row["completion_tokens"] == 0
    assert row["cost"] == pytest.approx(tokens * 0.02 / 1e6, rel=1e-9)


def test_top_n_and_return_documents(reranker: Gateway, direct_scores: list[float]) -> None:
    documents: list[Any] = [{"text": d} for d in DOCUMENTS]
    body = {"model": RERANKER, "query": QUERY, "documents": documents, "top_n": 2, "return_documents": True}
    results = rerank(reranker, body).json()["results"]
    best = sorted(range(len(DOCUMENTS)), key=lambda i: direct_scores[i], reverse=True)[:2]
    assert [(r["index"], r["document"]["text"]) for r in results] == [(i, DOCUMENTS[i]) for i in best]


def test_score_answers_in_input_order(reranker: Gateway, direct_scores: list[float]) -> None:
    headers = {"Authorization": f"Bearer {reranker.key}"}
    body = {"model": RERANKER, "text_1": QUERY, "text_2": DOCUMENTS}
    response = httpx.post(f"{reranker.base_url}/v1/score", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    scores = [d["score"] for d in response.json()["data"]]
    assert scores == pytest.approx(direct_scores, abs=1e-4)


def test_a_reranker_refuses_chat_and_embeddings(reranker: Gateway) -> None:
    client = reranker.client()
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model=RERANKER, messages=[{"role": "user", "content": "hi"}])
    assert "rerank model (task: rerank)" in chat.value.message and "/v1/rerank" in chat.value.message
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=RERANKER, input="hi")


def test_a_document_over_the_length_is_a_400_and_bills_nothing(reranker: Gateway) -> None:
    key = reranker.create_key("rerank-too-long")
    documents = ["short", "word " * 600]
    response = rerank(reranker, {"model": RERANKER, "query": QUERY, "documents": documents}, key=key)
    assert response.status_code == 400
    assert "documents[1]" in response.json()["error"]["message"]
    assert sum(r["prompt_tokens"] for r in reranker.usage_rows(key)) == 0
