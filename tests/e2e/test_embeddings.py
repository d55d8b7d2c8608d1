"""/v1/embeddings through the real gateway (default catalog: all-MiniLM-L6-v2 on vLLM's pooling runner),
driven with the official openai client and LangChain's OpenAIEmbeddings, checked against
sentence-transformers run here, directly, on the very folder the gateway prepared and serves."""

from __future__ import annotations

import base64
import math
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.catalog.model_prep import weights_path
from gateway.catalog.schema import load_catalog
from tests.conftest import REPO
from tests.e2e.conftest import EMBED_MODEL, MODEL, Gateway

pytestmark = pytest.mark.e2e

EMBED = EMBED_MODEL
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "rain",
    "falls",
    "on",
    "distant",
    "green",
    "hills",
]


def texts(n: int, offset: int = 0) -> list[str]:
    """``n`` different sentences of different lengths (3 to 40 words)."""
    out = []
    for i in range(offset, offset + n):
        length = 3 + (i * 7) % 38
        out.append(" ".join(WORDS[(i + j * 3) % len(WORDS)] for j in range(length)) + f" {i}")
    return out


@pytest.fixture(scope="module")
def folder(gateway: Gateway) -> Path:
    entry = load_catalog(REPO / "models.yaml").find(EMBED)
    assert entry is not None and entry.task == "embed"
    path = weights_path(entry, gateway.models_dir)
    assert isinstance(path, Path) and (path / "config.json").is_file()
    return path


@pytest.fixture(scope="module")
def reference(folder: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def token_count(reference: Any, inputs: list[str]) -> int:
    return sum(len(reference.tokenizer(text)["input_ids"]) for text in inputs)


def post(gateway: Gateway, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or gateway.key}"}
    return httpx.post(f"{gateway.base_url}/v1/embeddings", json=body, headers=headers, timeout=120)


def test_model_cards_carry_the_task(gateway: Gateway) -> None:
    cards = {m.id: m for m in gateway.client().models.list().data}
    assert cards[EMBED].model_extra is not None and cards[EMBED].model_extra["task"] == "embed"
    assert cards[MODEL].model_extra is not None and cards[MODEL].model_extra["task"] == "chat"


@pytest.mark.parametrize("batch", [1, 5, 64, 256])
def test_vectors_equal_sentence_transformers(gateway: Gateway, reference: Any, batch: int) -> None:
    inputs = texts(batch, offset=batch)
    response = gateway.client().embeddings.create(model=EMBED, input=inputs, encoding_format="float")
    expected = reference.encode(inputs, batch_size=32, convert_to_numpy=True)
    assert [d.index for d in response.data] == list(range(batch))
    for got, want in zip(response.data, expected, strict=True):
        assert len(got.embedding) == 384
        assert cosine(got.embedding, want.tolist()) >= 0.9999
        assert got.embedding == pytest.approx(want.tolist(), abs=1e-4)  # normalised as the model says
    assert response.usage.prompt_tokens == token_count(reference, inputs)
    assert response.usage.total_tokens == response.usage.prompt_tokens


def test_base64_decodes_to_the_same_floats(gateway: Gateway) -> None:
    import numpy as np

    inputs = texts(3)
    floats = post(gateway, {"model": EMBED, "input": inputs}).json()
    packed = post(gateway, {"model": EMBED, "input": inputs, "encoding_format": "base64"}).json()
    for f, b in zip(floats["data"], packed["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        assert decoded.tolist() == np.asarray(f["embedding"], dtype=np.float32).tolist()
    # The openai client asks for base64 itself when no format is given, and decodes it.
    default = gateway.client().embeddings.create(model=EMBED, input=inputs)
    for f, d in zip(floats["data"], default.data, strict=True):
        assert d.embedding == pytest.approx(f["embedding"], abs=1e-6)


def test_token_id_inputs_embed_like_their_text(gateway: Gateway, reference: Any) -> None:
    inputs = texts(2)
    ids = [reference.tokenizer(text)["input_ids"] for text in inputs]
    by_text = gateway.client().embeddings.create(model=EMBED, input=inputs, encoding_format="float")
    by_ids = gateway.client().embeddings.create(model=EMBED, input=ids, encoding_format="float")
    one = gateway.client().embeddings.create(model=EMBED, input=ids[0], encoding_format="float")
    for a, b in zip(by_text.data, by_ids.data, strict=True):
        assert cosine(a.embedding, b.embedding) >= 0.99999
    assert cosine(one.data[0].embedding, by_text.data[0].embedding) >= 0.99999
    assert by_ids.usage.prompt_tokens == by_text.usage.prompt_tokens == sum(len(i) for i in ids)


def test_langchain_openai_embeddings(gateway: Gateway, reference: Any) -> None:
    from langchain_openai import OpenAIEmbeddings

    embedder = OpenAIEmbeddings(
        model=EMBED,
        base_url=gateway.base_url + "/v1",
        api_key=gateway.key,  # type: ignore[arg-type]
        check_embedding_ctx_length=False,  # send text, not tiktoken ids (tiktoken would download)
        max_retries=0,
    )
    inputs = texts(4, offset=300)
    documents = embedder.embed_documents(inputs)
    query = embedder.embed_query(inputs[0])
    expected = reference.encode(inputs, convert_to_numpy=True)
    for got, want in zip(documents, expected, strict=True):
        assert cosine(got, want.tolist()) >= 0.9999
    assert cosine(query, expected[0].tolist()) >= 0.9999


def test_ledger_tokens_equal_usage(gateway: Gateway) -> None:
    key = gateway.create_key("embed-ledger")
    client = gateway.client(key=key)
    seen = [client.embeddings.create(model=EMBED, input=texts(n, n)).usage.prompt_tokens for n in (1, 9)]
    [row] = gateway.usage_rows(key)
    assert row["model"] == EMBED and row["requests"] == 2
    assert row["prompt_tokens"] == sum(seen) and row["completion_tokens"] == 0
    assert row["cost"] == pytest.approx(sum(seen) * 0.01 / 1e6, rel=1e-9)
    metrics = httpx.get(gateway.base_url + "/metrics").text
    labels = f'chip="cpu",kind="prompt",model="{EMBED}",pool="own",tenant="embed-ledger"'
    match = re.search(re.escape("maas_tokens_total{" + labels + "}") + r" (\S+)", metrics)
    assert match is not None and float(match.group(1)) == sum(seen)


def test_chat_and_embedding_models_refuse_each_others_requests(gateway: Gateway) -> None:
    client = gateway.client()
    with pytest.raises(openai.BadRequestError) as chat_to_embed:
        client.chat.completions.create(model=EMBED, messages=[{"role": "user", "content": "hi"}])
    assert "embedding model (task: embed)" in chat_to_embed.value.message
    assert chat_to_embed.value.code == "model_task_mismatch"
    with pytest.raises(openai.BadRequestError) as embed_to_chat:
        client.embeddings.create(model=MODEL, input="hi")
    assert "chat model (task: chat)" in embed_to_chat.value.message
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="minilm", prompt="hi", max_tokens=2)


BAD_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("empty string", {"input": ""}, "input[0] is empty"),
    ("empty list", {"input": []}, "inputs must not be empty"),
    ("empty string in a list", {"input": ["a", ""]}, "input[1] is empty"),
    ("too long", {"input": "word " * 400}, "maximum input length is 256 tokens"),
    ("10,000 inputs", {"input": ["a"] * 10_000}, "at most 2048 inputs"),
    ("wrong encoding_format", {"input": "a", "encoding_format": "int8"}, "encoding_format"),
    ("dimensions too large", {"input": "a", "dimensions": 385}, "larger than this model's embedding size"),
    ("dimensions not supported", {"input": "a", "dimensions": 128}, "cannot shorten"),
    ("token id out of range", {"input": [[1, 99_999_999]]}, "out of range"),
]


@pytest.mark.parametrize(("case", "body", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_a_clear_400_and_bills_nothing(
    gateway: Gateway, case: str, body: dict[str, Any], message: str
) -> None:
    tenant = "embed-bad-" + re.sub(r"\W+", "-", case)
    key = gateway.create_key(tenant)
    response = post(gateway, {"model": EMBED, **body}, key=key)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and message in error["message"], error
    rows = gateway.usage_rows(key)
    assert sum(r["prompt_tokens"] for r in rows) == 0 and sum(r["cost"] for r in rows) == 0


def test_token_budget_counts_embedding_tokens(gateway: Gateway) -> None:
    budget = 300
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "tenants",
            "create",
            "embed-budget",
            "--budget-tokens",
            str(budget),
        ],
        env=gateway.env,
        check=True,
        capture_output=True,
    )
    key = gateway.create_key("embed-budget")
    statuses: list[int] = []
    used = largest = 0
    for i in range(20):
        response = post(gateway, {"model": EMBED, "input": texts(2, offset=10 * i)}, key=key)
        statuses.append(response.status_code)
        if response.status_code == 200:
            tokens = response.json()["usage"]["prompt_tokens"]
            used, largest = used + tokens, max(largest, tokens)
        else:
            assert response.status_code == 429
            assert response.json()["error"]["code"] == "insufficient_quota"
    assert 200 in statuses and 429 in statuses
    assert used <= budget + largest
    [row] = gateway.usage_rows(key)
    assert row["prompt_tokens"] == used and row["completion_tokens"] == 0
