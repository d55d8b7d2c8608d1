"""Each family's chat template renders a fixed conversation exactly as the family's official template does.

Rendered with transformers' own renderer (``render_jinja_template``: sandboxed Jinja with trim_blocks and
lstrip_blocks, the way ``apply_chat_template`` renders), with each family's real bos/eos strings. The
golden strings are written out by hand from the documented formats cited above each one.
"""

from __future__ import annotations

from typing import Any

import pytest

from backends.chat_templates import TEMPLATES, UnknownChatTemplate, get_template

SYSTEM = {"role": "system", "content": "You are a helpful assistant"}
CONVERSATION = [
    SYSTEM,
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Who are you"},
]

GOLDEN: dict[str, str] = {
    # Llama 3.1 Instruct: Meta's model card "Prompt format" and the chat_template of
    # meta-llama/Llama-3.1-8B-Instruct (tokenizer_config.json): <|begin_of_text|>, a system header that
    # always carries "Cutting Knowledge Date: December 2023" and "Today Date: 26 Jul 2024", turns as
    # <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>. llama.cpp tests/test-chat-template.cpp
    # ("Llama 3") has the same turn layout.
    "llama3": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        "You are a helpful assistant<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    # Qwen2.5 Instruct: ChatML (<|im_start|>role\n...<|im_end|>\n), the Qwen2.5 model cards and the
    # chat_template of Qwen/Qwen2.5-7B-Instruct; llama.cpp tests/test-chat-template.cpp (ChatML golden).
    "qwen2_5": (
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\nHi there<|im_end|>\n"
        "<|im_start|>user\nWho are you<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    # Qwen3: the same ChatML layout, no default system prompt (chat_template of Qwen/Qwen3-8B).
    "qwen3": (
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\nHi there<|im_end|>\n"
        "<|im_start|>user\nWho are you<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    # DeepSeek-V2-Lite-Chat: llama.cpp tests/test-chat-template.cpp ("DeepSeek-V2", rendered there with an
    # empty bos_token; the model's bos is <｜begin▁of▁sentence｜>).
    "deepseek_v2": (
        "<｜begin▁of▁sentence｜>You are a helpful assistant\n\n"
        "User: Hello\n\nAssistant: Hi there<｜end▁of▁sentence｜>"
        "User: Who are you\n\nAssistant:"
    ),
    # DeepSeek-V3: chat_template of deepseek-ai/DeepSeek-V3 (bos, system prompt, <｜User｜>/<｜Assistant｜>
    # turns, answers closed by <｜end▁of▁sentence｜>, generation prompt <｜Assistant｜>).
    "deepseek_v3": (
        "<｜begin▁of▁sentence｜>You are a helpful assistant"
        "<｜User｜>Hello<｜Assistant｜>Hi there<｜end▁of▁sentence｜>"
        "<｜User｜>Who are you<｜Assistant｜>"
    ),
    # DeepSeek-R1 and its distills: chat_template of deepseek-ai/DeepSeek-R1 (generation prompt
    # "<｜Assistant｜><think>\n", per the R1 model card's usage recommendations).
    "deepseek_r1": (
        "<｜begin▁of▁sentence｜>You are a helpful assistant"
        "<｜User｜>Hello<｜Assistant｜>Hi there<｜end▁of▁sentence｜>"
        "<｜User｜>Who are you<｜Assistant｜><think>\n"
    ),
    # GLM-4 chat: llama.cpp tests/test-chat-template.cpp ("ChatGLM4", the chat_template of
    # THUDM/glm-4-9b-chat): [gMASK]<sop>, <|role|>\n before each text, generation prompt <|assistant|>.
    "glm4": (
        "[gMASK]<sop><|system|>\nYou are a helpful assistant<|user|>\nHello"
        "<|assistant|>\nHi there<|user|>\nWho are you<|assistant|>"
    ),
    # Yi-1.5 Chat: chat_template of 01-ai/Yi-1.5-9B-Chat (system prompt as plain text, ChatML user turns
    # each followed by the assistant header, answers closed by <|im_end|>\n).
    "yi": (
        "You are a helpful assistant"
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
        "Hi there<|im_end|>\n"
        "<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n"
    ),
    # BLOOM / BLOOMZ: no official template; the gateway's own format (backends/chat_templates/bloom.jinja,
    # README "Model families").
    "bloom": "You are a helpful assistant\n\nUser: Hello\nAssistant: Hi there\nUser: Who are you\nAssistant:",
}


def render(
    name: str, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **extra: Any
) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    template = get_template(name)
    rendered = render_jinja_template(
        conversations=[messages],
        chat_template=template.source(),
        add_generation_prompt=add_generation_prompt,
        bos_token=template.bos_token or "",
        eos_token=template.eos_token,
        **extra,
    )
    return str(rendered[0][0])


def test_every_shipped_template_has_a_golden_string() -> None:
    assert set(GOLDEN) == set(TEMPLATES)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_template_renders_the_fixed_conversation_as_the_official_template(name: str) -> None:
    assert render(name, CONVERSATION) == GOLDEN[name]


def test_llama3_without_a_system_message_still_sends_the_date_header() -> None:
    # Llama 3.1's template always emits the system header with the cutoff and date lines.
    assert render("llama3", CONVERSATION[1:2]) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_qwen2_5_without_a_system_message_uses_its_default_system_prompt() -> None:
    assert render("qwen2_5", CONVERSATION[1:2]).startswith(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
    )


def test_qwen3_drops_earlier_reasoning_and_can_switch_thinking_off() -> None:
    messages = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "<think>\nThe user greets me.\n</think>\n\nHi there"},
        {"role": "user", "content": "Who are you"},
    ]
    assert render("qwen3", messages, enable_thinking=False) == (
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\nHi there<|im_end|>\n"
        "<|im_start|>user\nWho are you<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_deepseek_r1_keeps_only_the_answer_of_earlier_turns() -> None:
    messages = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "<think>\nA greeting.\n</think>\n\nHi there"},
        {"role": "user", "content": "Who are you"},
    ]
    assert render("deepseek_r1", messages) == (
        "<｜begin▁of▁sentence｜><｜User｜>Hello<｜Assistant｜>\n\nHi there<｜end▁of▁sentence｜>"
        "<｜User｜>Who are you<｜Assistant｜><think>\n"
    )


def test_yi_opens_the_assistant_turn_even_without_a_generation_prompt() -> None:
    # As Yi-1.5's official template does: the assistant header follows every user turn.
    assert render("yi", CONVERSATION[1:2], add_generation_prompt=False) == (
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    )


def test_unknown_template_name_lists_the_shipped_ones() -> None:
    with pytest.raises(UnknownChatTemplate, match="llama3"):
        get_template("chatml")


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOL_CONVERSATION = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]
TOOLS_GOLDEN: dict[str, str] = {
    # Qwen2.5 Instruct: the chat_template of Qwen/Qwen2.5-7B-Instruct and the Qwen docs' "Function Calling"
    # page (tools as JSON lines in <tools></tools> in the system turn, default system prompt kept, calls in
    # <tool_call> blocks, results as <tool_response> in a user turn).
    "qwen2_5": (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n"
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        '{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", '
        '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, '
        '"required": ["city"]}}}\n'
        "</tools>\n\nFor each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
}


@pytest.mark.parametrize("name", sorted(TOOLS_GOLDEN))
def test_template_renders_tools_calls_and_results_as_the_official_template(name: str) -> None:
    assert render(name, TOOL_CONVERSATION, tools=[WEATHER_TOOL]) == TOOLS_GOLDEN[name]


def test_templates_with_a_tool_parser_are_the_ones_with_a_tool_golden_string() -> None:
    assert {t.name for t in TEMPLATES.values() if t.tool_parser} == set(TOOLS_GOLDEN)
