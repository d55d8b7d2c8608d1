"""Each family's chat template renders a fixed conversation exactly as the family's official template does.

Rendered with transformers' own renderer (``render_jinja_template``: sandboxed Jinja with trim_blocks and
lstrip_blocks, the way ``apply_chat_template`` renders), with each family's real bos/eos strings. The
golden strings are written out by hand from the documented formats cited above each one.
"""

from __future__ import annotations

import json
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
TOOL_CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
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
# The tool as Hugging Face's tojson writes it: on one line, and indented by 4 (Llama 3.1 writes the whole
# tool, GLM-4 its function).
WEATHER_LINE = (
    '{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", '
    '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}'
)
WEATHER_INDENTED = """{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {
                    "type": "string"
                }
            },
            "required": [
                "city"
            ]
        }
    }
}"""
WEATHER_FUNCTION_INDENTED = """{
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {
                "type": "string"
            }
        },
        "required": [
            "city"
        ]
    }
}"""
QWEN_TOOLS = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{WEATHER_LINE}\n"
    "</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
)
DEEPSEEK_TOOLS = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{WEATHER_LINE}\n"
    "</tools>\n\nFor function call returns, you should first print <｜tool▁calls▁begin｜>\n"
    "For each function call, you should return object like:\n"
    "<｜tool▁call▁begin｜>function<｜tool▁sep｜><function_name>\n```json\n<function_arguments_in_json_format>\n"
    "```<｜tool▁call▁end｜>\n"
    "At the end of function call returns, you should print <｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
)
DEEPSEEK_CONVERSATION = (
    "<｜User｜>Weather in Paris?"
    "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
    '```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>'
    "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>sunny<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"
)
TOOLS_GOLDEN: dict[str, str] = {
    # Qwen2.5 Instruct: the chat_template of Qwen/Qwen2.5-7B-Instruct and the Qwen docs' "Function Calling"
    # page (tools as JSON lines in <tools></tools> in the system turn, default system prompt kept, calls in
    # <tool_call> blocks, results as <tool_response> in a user turn).
    "qwen2_5": (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n"
        + QWEN_TOOLS
        + "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    # Qwen3: the chat_template of Qwen/Qwen3-8B: Qwen 2.5's tool block without a default system prompt, no
    # newline before the call of a turn without text.
    "qwen3": (
        "<|im_start|>system\n" + QWEN_TOOLS + "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    # Llama 3.1 Instruct: the chat_template of meta-llama/Llama-3.1-8B-Instruct and the model card's "JSON
    # based tool calling": "Environment: ipython", the tools (indent 4) in the first user turn after the
    # instruction (no space before "Do not use variables."), the call as {"name", "parameters"}, the result
    # in an ipython turn written with tojson (a string in quotes).
    "llama3": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
        "Given the following functions, please respond with a JSON for a function call with its proper "
        "arguments that best answers the given prompt.\n\n"
        'Respond in the format {"name": function name, "parameters": dictionary of argument name and its '
        "value}.Do not use variables.\n\n" + WEATHER_INDENTED + "\n\nWeather in Paris?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>'
        '<|start_header_id|>ipython<|end_header_id|>\n\n"sunny"<|eot_id|>'
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    # DeepSeek-V3: the tool tokens of deepseek-ai/DeepSeek-V3's chat_template (call list closed as in
    # DeepSeek-V3-0324's); the tools in the system prompt with the wording of vLLM's
    # examples/tool_chat_template_deepseekv3.jinja. After the results the model continues directly.
    "deepseek_v3": "<｜begin▁of▁sentence｜>" + DEEPSEEK_TOOLS + DEEPSEEK_CONVERSATION,
    # DeepSeek-R1: the same tool tokens (chat_template of deepseek-ai/DeepSeek-R1).
    "deepseek_r1": "<｜begin▁of▁sentence｜>" + DEEPSEEK_TOOLS + DEEPSEEK_CONVERSATION,
    # GLM-4 chat: the chat_template of THUDM/glm-4-9b-chat (a system turn carrying the tools, its fixed
    # introduction, each function as JSON indented by 4) as THUDM/GLM-4's OpenAI server feeds it (a call is
    # an assistant turn whose metadata is the function name, a result is an observation turn).
    "glm4": (
        "[gMASK]<sop><|system|>\n你是一个名为 ChatGLM 的人工智能助手。你是基于智谱AI训练的语言模型 GLM-4 "
        "模型开发的，你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具\n## get_weather\n\n"
        + WEATHER_FUNCTION_INDENTED
        + "\n在调用上述函数时，请使用 Json 格式表示调用的参数。"
        "<|user|>\nWeather in Paris?"
        '<|assistant|>get_weather\n{"city": "Paris"}'
        "<|observation|>\nsunny"
        "<|assistant|>"
    ),
}


@pytest.mark.parametrize("name", sorted(TOOLS_GOLDEN))
def test_template_renders_tools_calls_and_results_as_the_official_template(name: str) -> None:
    assert render(name, TOOL_CONVERSATION, tools=[WEATHER_TOOL]) == TOOLS_GOLDEN[name]


@pytest.mark.parametrize("name", sorted(TOOLS_GOLDEN))
def test_the_gateway_messages_render_the_golden_tool_conversation(name: str) -> None:
    """What a replica hands the template (``template_inputs``: null content as "", arguments as the JSON
    text the client sent, parsed) renders the same golden string."""
    from backends.base import ChatMessage, ChatPrompt, ToolCall
    from backends.prompting import template_inputs
    from backends.tools import ToolFunction

    function = WEATHER_TOOL["function"]
    prompt = ChatPrompt(
        (
            ChatMessage("user", "Weather in Paris?"),
            ChatMessage(
                "assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)
            ),
            ChatMessage("tool", "sunny", tool_call_id="call_1"),
        ),
        tools=(ToolFunction("get_weather", function["description"], json.dumps(function["parameters"])),),
    )
    messages, tools = template_inputs(prompt)
    assert render(name, messages, tools=tools) == TOOLS_GOLDEN[name]


def test_templates_that_render_tools_are_the_ones_with_a_tool_golden_string() -> None:
    assert {t.name for t in TEMPLATES.values() if t.renders_tools} == set(TOOLS_GOLDEN)


def test_every_tool_parser_belongs_to_a_template_that_renders_tools() -> None:
    assert all(t.renders_tools for t in TEMPLATES.values() if t.tool_parser)


def test_templates_without_a_tool_format_leave_tools_out() -> None:
    # Yi, BLOOM and DeepSeek-V2 have no tool format: the prompt is the plain conversation's.
    for name in ("yi", "bloom", "deepseek_v2"):
        assert not TEMPLATES[name].renders_tools and TEMPLATES[name].tool_parser is None
        assert render(name, CONVERSATION, tools=[WEATHER_TOOL]) == GOLDEN[name]


PARALLEL = [
    {"role": "system", "content": "You are a helpful assistant"},
    {"role": "user", "content": "Weather in Zürich, and the time?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Zürich"}},
            },
            {"id": "c2", "type": "function", "function": {"name": "now", "arguments": {}}},
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": '{"sky": "sunny"}'},
    {"role": "tool", "tool_call_id": "c2", "content": "12:00"},
    {"role": "assistant", "content": "Sunny, and it is noon."},
    {"role": "user", "content": "Thanks"},
]


def test_qwen3_puts_the_system_prompt_before_the_tools_and_groups_parallel_calls_and_results() -> None:
    rendered = render("qwen3", PARALLEL, tools=[WEATHER_TOOL])
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant\n\n" + QWEN_TOOLS + "<|im_start|>user\n"
        "Weather in Zürich, and the time?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n'
        '</tool_call>\n<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"sky": "sunny"}\n</tool_response>\n'
        "<tool_response>\n12:00\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\nSunny, and it is noon.<|im_end|>\n"
        "<|im_start|>user\nThanks<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    ("name", "between_results", "prompt"),
    [
        ("deepseek_v3", "\n", "<｜Assistant｜>"),
        ("deepseek_r1", "", "<｜Assistant｜><think>\n"),
    ],
)
def test_deepseek_lists_parallel_calls_and_results_and_answers_after_the_results(
    name: str, between_results: str, prompt: str
) -> None:
    rendered = render(name, PARALLEL, tools=[WEATHER_TOOL])
    assert rendered == (
        "<｜begin▁of▁sentence｜>You are a helpful assistant\n\n" + DEEPSEEK_TOOLS + "<｜User｜>"
        "Weather in Zürich, and the time?<｜Assistant｜><｜tool▁calls▁begin｜>"
        "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
        '{"city": "Zürich"}\n```<｜tool▁call▁end｜>\n'
        "<｜tool▁call▁begin｜>function<｜tool▁sep｜>now\n```json\n{}\n```<｜tool▁call▁end｜>"
        "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
        '<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>{"sky": "sunny"}<｜tool▁output▁end｜>'
        + between_results
        + "<｜tool▁output▁begin｜>12:00<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"
        "Sunny, and it is noon.<｜end▁of▁sentence｜><｜User｜>Thanks" + prompt
    )


def test_glm4_writes_each_call_as_an_assistant_turn_named_by_its_function() -> None:
    rendered = render("glm4", PARALLEL, tools=[WEATHER_TOOL])
    assert rendered.startswith("[gMASK]<sop><|system|>\n你是一个名为 ChatGLM 的人工智能助手。")
    assert rendered.split("在调用上述函数时，请使用 Json 格式表示调用的参数。", 1)[1] == (
        "<|system|>\nYou are a helpful assistant<|user|>\nWeather in Zürich, and the time?"
        '<|assistant|>get_weather\n{"city": "Zürich"}<|assistant|>now\n{}'
        '<|observation|>\n{"sky": "sunny"}<|observation|>\n12:00'
        "<|assistant|>\nSunny, and it is noon.<|user|>\nThanks<|assistant|>"
    )


def test_llama3_refuses_two_calls_in_one_turn_as_the_official_template_does() -> None:
    from jinja2.exceptions import TemplateError

    with pytest.raises(TemplateError, match="single tool-calls"):
        render("llama3", PARALLEL, tools=[WEATHER_TOOL])


def test_llama3_can_put_the_tools_in_the_system_turn() -> None:
    rendered = render("llama3", TOOL_CONVERSATION[:1], tools=[WEATHER_TOOL], tools_in_user_message=False)
    assert rendered == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        "You have access to the following functions. To call a function, please respond with JSON for a "
        'function call.Respond in the format {"name": function name, "parameters": dictionary of argument '
        "name and its value}.Do not use variables.\n\n" + WEATHER_INDENTED + "\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWeather in Paris?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
