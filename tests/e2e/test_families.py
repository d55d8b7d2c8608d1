"""Six model families served at once (deploy/catalogs/families-tiny.yaml), driven with the official client.

One gateway for the module. For each family the greedy tokens that come back through the gateway equal,
token for token, what transformers generates from the same checkpoint folder and the same chat-rendered
prompt (the reference is computed here, on the CPU, in float32). A tool conversation is billed as each
family's template renders it, and ``auto`` is read by the family's parser or refused by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.catalog.model_prep import weights_path
from gateway.catalog.schema import load_catalog
from tests.conftest import REPO
from tests.e2e.conftest import Gateway, create_key, gateway_env, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e

CATALOG = REPO / "deploy" / "catalogs" / "families-tiny.yaml"
MODELS = ["tiny-llama", "tiny-qwen", "tiny-deepseek", "tiny-glm", "tiny-yi", "tiny-bloom"]
MESSAGES: list[dict[str, str]] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
MAX_TOKENS = 8


@dataclass(frozen=True)
class Reference:
    prompt_ids: list[int]
    ids: list[int]
    token_texts: list[str]
    text: str


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    env = gateway_env(tmp_path_factory, "maas-families")
    gw = start_gateway(env, create_key(env, "families"), config=CATALOG)
    try:
        yield gw
    finally:
        stop_gateway(gw)


@pytest.fixture(scope="module")
def references(families: Gateway) -> dict[str, Reference]:
    """transformers' greedy answer for each model, from the folder the gateway prepared and serves."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = {}
    for model in load_catalog(CATALOG).models:
        folder = Path(weights_path(model, families.models_dir))
        tokenizer = AutoTokenizer.from_pretrained(folder)
        engine = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        prompt = list(tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=False))
        with torch.no_grad():
            out = engine.generate(torch.tensor([prompt]), max_new_tokens=MAX_TOKENS, do_sample=False)
        ids = out[0][len(prompt) :].tolist()
        result[model.name] = Reference(
            prompt_ids=prompt,
            ids=ids,
            token_texts=[tokenizer.decode([i]) for i in ids],
            text=tokenizer.decode(ids, skip_special_tokens=True),
        )
    return result


@pytest.mark.parametrize("model", MODELS)
def test_greedy_tokens_through_the_gateway_equal_transformers(
    families: Gateway, references: dict[str, Reference], model: str
) -> None:
    reply = families.client().chat.completions.create(
        model=model,
        messages=MESSAGES,
        temperature=0,
        max_tokens=MAX_TOKENS,
        logprobs=True,  # type: ignore[arg-type]
    )
    ref = references[model]
    choice = reply.choices[0]
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == len(ref.prompt_ids)  # the same template, rendered the same way
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert [t.token for t in choice.logprobs.content] == ref.token_texts
    assert reply.usage.completion_tokens == len(ref.ids)
    assert choice.message.content == ref.text


def ask(client: openai.OpenAI, model: str) -> tuple[str, str, int]:
    """The app builder's code: only ``model`` changes between families."""
    text, finish, usage = "", "", 0
    stream = client.chat.completions.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
    return text, finish, usage


def test_the_same_client_code_serves_all_six_families_at_once(families: Gateway) -> None:
    client = families.client()
    listed = {m.id for m in client.models.list()}
    assert set(MODELS) <= listed
    with ThreadPoolExecutor(len(MODELS)) as pool:
        answers = dict(zip(MODELS, pool.map(lambda m: ask(client, m), MODELS), strict=True))
    for model, (text, finish, completion_tokens) in answers.items():
        assert text, model
        assert finish in ("stop", "length"), model
        assert 0 < completion_tokens <= MAX_TOKENS, model


def test_unknown_model_is_404_listing_the_available_names(families: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        families.client().chat.completions.create(model="tiny-mistral", messages=MESSAGES)  # type: ignore[arg-type]
    message = str(info.value)
    for model in MODELS:
        assert model in message


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOL_HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Zürich?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Zürich"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'},
]


def template_view(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as a chat template sees them (vLLM's server and the gateway alike): null content as
    text, a call's JSON arguments parsed."""
    out = []
    for message in messages:
        message = {**message, "content": message["content"] or ""}
        if "tool_calls" in message:
            message["tool_calls"] = [
                {**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                for c in message["tool_calls"]
            ]
        out.append(message)
    return out


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-qwen", "tiny-deepseek", "tiny-glm"])
def test_tool_definitions_calls_and_results_are_billed_as_the_family_template_renders_them(
    families: Gateway, model: str
) -> None:
    from transformers import AutoTokenizer

    entry = next(m for m in load_catalog(CATALOG).models if m.name == model)
    tokenizer = AutoTokenizer.from_pretrained(Path(weights_path(entry, families.models_dir)))
    rendered = tokenizer.apply_chat_template(
        template_view(TOOL_HISTORY), tools=[WEATHER], add_generation_prompt=True, return_dict=False
    )
    plain = tokenizer.apply_chat_template(TOOL_HISTORY[:1], add_generation_prompt=True, return_dict=False)
    assert len(rendered) > len(plain) + 40  # the family's template writes the tool, the call and the result

    key = families.create_key(f"tools-{model}")
    reply = families.client(key=key).chat.completions.create(
        model=model,
        messages=TOOL_HISTORY,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=4,
    )
    assert reply.usage is not None and reply.usage.prompt_tokens == len(rendered)
    [row] = families.usage_rows(key)
    assert row["model"] == model and row["prompt_tokens"] == reply.usage.prompt_tokens


def test_auto_is_read_with_the_family_parser_or_refused_by_name(families: Gateway) -> None:
    client = families.client()
    for model in ("tiny-llama", "tiny-deepseek"):  # the parser loads against the checkpoint's vocabulary
        reply = client.chat.completions.create(
            model=model,
            messages=TOOL_HISTORY[:1],
            tools=[WEATHER],
            max_tokens=4,  # type: ignore[arg-type,list-item]
        )
        assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls"), model
    for model in ("tiny-glm", "tiny-yi", "tiny-bloom"):  # no parser reads their calls
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model=model,
                messages=TOOL_HISTORY[:1],
                tools=[WEATHER],
                max_tokens=4,  # type: ignore[arg-type,list-item]
            )
        assert model in str(info.value) and "auto" in str(info.value)
