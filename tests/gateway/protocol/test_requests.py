from __future__ import annotations

import pytest
from pydantic import ValidationError

from backends.base import ChatPrompt, TextPrompt, TokenPrompt
from gateway.protocol.requests import ChatCompletionRequest, CompletionRequest

BASE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_chat_request_maps_sampling_options() -> None:
    body = ChatCompletionRequest.model_validate(
        {
            **BASE,
            "temperature": 0.5,
            "top_p": 0.9,
            "n": 2,
            "stop": "END",
            "seed": 7,
            "presence_penalty": 0.1,
            "frequency_penalty": -0.2,
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "logprobs": True,
            "top_logprobs": 3,
        }
    )
    sampling = body.sampling()
    assert sampling.max_tokens == 20  # max_completion_tokens wins over the deprecated max_tokens
    assert (sampling.temperature, sampling.top_p, sampling.n, sampling.seed) == (0.5, 0.9, 2, 7)
    assert sampling.stop == ("END",)
    assert (sampling.presence_penalty, sampling.frequency_penalty) == (0.1, -0.2)
    assert sampling.logprobs == 3


def test_chat_messages_accept_text_parts_and_developer_role() -> None:
    body = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            ],
        }
    )
    prompt = body.prompt()
    assert isinstance(prompt, ChatPrompt)
    assert [(m.role, m.content) for m in prompt.messages] == [("system", "be brief"), ("user", "ab")]


@pytest.mark.parametrize(
    "patch",
    [
        {"temperature": 2.5},
        {"top_p": 0},
        {"n": 0},
        {"n": 100},
        {"max_tokens": 0},
        {"presence_penalty": 3},
        {"top_logprobs": 2},  # without logprobs
        {"messages": []},
        {"messages": [{"role": "robot", "content": "x"}]},
        {"stop": ["a"] * 17},
        {"temperature": "hot"},
    ],
)
def test_out_of_range_or_wrong_typed_chat_fields_are_rejected(patch: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({**BASE, **patch})


def test_completion_prompt_forms() -> None:
    assert isinstance(CompletionRequest(model="m", prompt="x").to_prompt(), TextPrompt)
    assert isinstance(CompletionRequest(model="m", prompt=["x"]).to_prompt(), TextPrompt)
    tokens = CompletionRequest(model="m", prompt=[1, 2, 3]).to_prompt()
    assert isinstance(tokens, TokenPrompt) and tokens.token_ids == (1, 2, 3)
    batched = CompletionRequest(model="m", prompt=["a", "b"])
    assert batched.unsupported() is not None


def test_completion_defaults_to_sixteen_tokens_like_openai() -> None:
    assert CompletionRequest(model="m", prompt="x").sampling().max_tokens == 16


def test_vllm_ignore_eos_extension_is_passed_through() -> None:
    body = ChatCompletionRequest.model_validate({**BASE, "ignore_eos": True, "max_tokens": 8})
    assert body.sampling().ignore_eos is True
    assert CompletionRequest(model="m", prompt="x").sampling().ignore_eos is False
