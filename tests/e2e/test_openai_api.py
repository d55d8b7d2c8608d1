"""The OpenAI API of the real gateway, driven with the official ``openai`` client."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import EMBED_MODEL, MODEL, Gateway

pytestmark = pytest.mark.e2e

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def chat(gateway: Gateway, **kwargs: Any) -> Any:
    params: dict[str, Any] = {"model": MODEL, "messages": QUESTION, "temperature": 0, "max_tokens": 24}
    params.update(kwargs)
    return gateway.client().chat.completions.create(**params)


def test_chat_answers_paris_with_exact_usage(gateway: Gateway, tokenizer: Any) -> None:
    response = chat(gateway, logprobs=True)
    choice = response.choices[0]
    assert "Paris" in choice.message.content
    assert choice.finish_reason == "stop"
    assert response.model == MODEL and response.object == "chat.completion"
    expected_prompt = tokenizer.apply_chat_template(
        QUESTION, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    assert response.usage.prompt_tokens == len(expected_prompt)
    # One logprob entry per generated token, the end-of-turn token included.
    assert response.usage.completion_tokens == len(choice.logprobs.content)
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_alias_reaches_the_same_model(gateway: Gateway) -> None:
    assert chat(gateway, model="smollm2").model == MODEL


def test_greedy_decoding_is_deterministic(gateway: Gateway) -> None:
    prompt = [{"role": "user", "content": "Write one sentence about the sea."}]
    first = chat(gateway, messages=prompt, max_tokens=20)
    second = chat(gateway, messages=prompt, max_tokens=20)
    assert first.choices[0].message.content == second.choices[0].message.content


def test_stream_matches_non_stream_and_reports_usage(gateway: Gateway) -> None:
    whole = chat(gateway)
    stream = gateway.client().chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        temperature=0,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == []
    for field in ("prompt_tokens", "completion_tokens", "total_tokens"):  # cached_tokens may differ
        assert getattr(chunks[-1].usage, field) == getattr(whole.usage, field)
    assert all(c.usage is None for c in chunks[:-1])


def test_raw_stream_ends_with_done_and_sends_no_usage_unless_asked(gateway: Gateway) -> None:
    body = {"model": MODEL, "messages": QUESTION, "temperature": 0, "max_tokens": 8, "stream": True}
    headers = {"Authorization": f"Bearer {gateway.key}"}
    with httpx.stream("POST", gateway.base_url + "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    assert not any('"usage"' in line for line in lines)


def test_sampling_options_are_honoured(gateway: Gateway) -> None:
    stopped = chat(gateway, stop=[" Paris"])
    assert stopped.choices[0].message.content == "The capital of France is"
    assert stopped.choices[0].finish_reason == "stop"

    short = chat(gateway, max_completion_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3

    seeded = dict(
        temperature=1.0, top_p=0.95, seed=1234, max_tokens=16, presence_penalty=0.5, frequency_penalty=0.5
    )
    assert (
        chat(gateway, **seeded).choices[0].message.content
        == chat(gateway, **seeded).choices[0].message.content
    )

    past_eos = chat(gateway, max_tokens=40, extra_body={"ignore_eos": True})  # vLLM's extension
    assert past_eos.usage.completion_tokens == 40 and past_eos.choices[0].finish_reason == "length"

    several = chat(gateway, n=3, temperature=1.0, seed=7, max_tokens=12)
    assert [c.index for c in several.choices] == [0, 1, 2]
    assert several.usage.completion_tokens >= 3


def test_top_logprobs_are_returned(gateway: Gateway) -> None:
    response = chat(gateway, logprobs=True, top_logprobs=3, max_tokens=4)
    content = response.choices[0].logprobs.content
    assert len(content) == 4
    for item in content:
        assert len(item.top_logprobs) == 3
        assert item.top_logprobs[0].logprob >= item.top_logprobs[-1].logprob
        assert item.logprob <= 0 and bytes(item.bytes).decode() == item.token


def test_text_completions_stream_and_non_stream(gateway: Gateway, tokenizer: Any) -> None:
    client = gateway.client()
    prompt = "The capital of France is"
    whole = client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=5, logprobs=2)
    assert "Paris" in whole.choices[0].text
    assert whole.usage.prompt_tokens == len(tokenizer.encode(prompt))
    assert whole.usage.completion_tokens == 5 and whole.choices[0].finish_reason == "length"
    assert len(whole.choices[0].logprobs.tokens) == 5
    streamed = client.completions.create(
        model=MODEL,
        prompt=prompt,
        temperature=0,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == 5
    tokens = client.completions.create(
        model=MODEL, prompt=tokenizer.encode(prompt), temperature=0, max_tokens=5
    )
    assert tokens.choices[0].text == whole.choices[0].text


def test_models_endpoint_lists_the_catalog(gateway: Gateway) -> None:
    models = gateway.client().models.list()
    ids = [m.id for m in models.data]
    assert ids == [MODEL, EMBED_MODEL]
    card = gateway.client().models.retrieve("smollm2")
    assert card.id == MODEL and card.owned_by == "huggingfacetb"


def test_health_is_ok(gateway: Gateway) -> None:
    response = httpx.get(gateway.base_url + "/health")
    assert response.status_code == 200 and response.json()["models"] == {
        MODEL: "RUNNING",
        EMBED_MODEL: "RUNNING",
    }


def test_unknown_model_is_404_with_available_names(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        chat(gateway, model="gpt-4o")
    assert info.value.code == "model_not_found"
    assert MODEL in info.value.message


def test_bad_and_missing_keys_are_401(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key="sk-maas-wrong").models.list()
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions", json={"model": MODEL, "messages": QUESTION}
    )
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_prompt_longer_than_the_context_is_400(gateway: Gateway) -> None:
    long = [{"role": "user", "content": "hello " * 3000}]
    with pytest.raises(openai.BadRequestError) as info:
        chat(gateway, messages=long)
    assert info.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as info:
        chat(gateway, max_tokens=5000)
    assert info.value.code == "context_length_exceeded" and info.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError):  # streamed requests get the status too, before any byte
        chat(gateway, messages=long, stream=True)


def test_malformed_and_wrongly_typed_bodies_are_400(gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {gateway.key}", "Content-Type": "application/json"}
    url = gateway.base_url + "/v1/chat/completions"
    assert httpx.post(url, content=b"{not json", headers=headers).status_code == 400
    wrong = httpx.post(url, json={"model": MODEL, "messages": "hi"}, headers=headers)
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "messages"
    with pytest.raises(openai.BadRequestError):
        chat(gateway, temperature=7)


def test_hostile_input_does_not_hurt_the_replica(gateway: Gateway) -> None:
    client = gateway.client()
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt=[10**9, -5], max_tokens=2)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="", max_tokens=2)
    weird = chat(gateway, messages=[{"role": "user", "content": "\x00\ud7ff<|im_end|>\n" * 20}], max_tokens=4)
    assert weird.usage.completion_tokens >= 1
    # A client that goes away mid-stream.
    stream = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=200, stream=True)
    next(iter(stream))
    stream.close()
    assert "Paris" in chat(gateway).choices[0].message.content


def test_every_64_bit_seed_reaches_the_engine_and_others_are_400(gateway: Gateway) -> None:
    for seed in (2**63 - 1, -(2**63), 0):
        answer = chat(gateway, seed=seed, temperature=1, max_tokens=4)
        assert answer.usage.completion_tokens >= 1
    seeded = [
        chat(gateway, seed=2**63 - 1, temperature=1, max_tokens=8).choices[0].message.content for _ in "ab"
    ]
    assert seeded[0] == seeded[1]  # the same seed samples the same answer
    with pytest.raises(openai.BadRequestError) as info:
        chat(gateway, seed=2**64)
    assert info.value.param == "seed"


def test_concurrent_requests_are_all_answered(gateway: Gateway) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: chat(gateway).choices[0].message.content, range(8)))
    assert all("Paris" in a for a in answers)
    assert len(set(answers)) == 1
