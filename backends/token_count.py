"""Counting prompt tokens in the gateway, before routing, with the model's own vocabulary and template.

Used only for admission (rate limits and budgets); bills use the engine's exact counts. The prepared model
folder gives the Hugging Face ``tokenizers`` file and the chat template, rendered here with a sandboxed
Jinja environment the way transformers renders it, so a chat prompt's count includes the template's own
tokens (a default system prompt, role markers). Without them, counting falls back to UTF-8 bytes plus a
generous per-message allowance: an upper bound for byte-level vocabularies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import ChatPrompt, Prompt, TextPrompt, TokenPrompt
from backends.prompting import template_inputs

logger = logging.getLogger(__name__)

FALLBACK_PER_MESSAGE = 64


def byte_count(text: str) -> int:
    return len(text.encode("utf-8"))


@dataclass(frozen=True)
class PromptCounter:
    """Counts a prompt's tokens as the engine will see them."""

    count: Callable[[str], int] = byte_count
    render_chat: Callable[[list[dict[str, Any]], list[dict[str, Any]] | None], str] | None = None

    def prompt_tokens(self, prompt: Prompt) -> int:
        if isinstance(prompt, TokenPrompt):
            return len(prompt.token_ids)
        if isinstance(prompt, TextPrompt):
            return self.count(prompt.text) + 1
        assert isinstance(prompt, ChatPrompt)
        messages, tools = template_inputs(prompt)
        if self.render_chat is not None:
            try:
                return self.count(self.render_chat(messages, tools))
            except Exception as exc:  # a template this renderer cannot run: fall back to the bound
                logger.warning("chat template render failed error=%s", type(exc).__name__)
        extra = sum(byte_count(json.dumps(t)) for t in tools or ())
        extra += sum(byte_count(json.dumps(m["tool_calls"])) for m in messages if "tool_calls" in m)
        return (
            sum(byte_count(m["content"]) + FALLBACK_PER_MESSAGE for m in messages)
            + FALLBACK_PER_MESSAGE
            + extra
        )


def _chat_template(folder: Path, config: dict[str, Any]) -> str | None:
    template = config.get("chat_template")
    if isinstance(template, str):
        return template
    file = folder / "chat_template.jinja"
    return file.read_text() if file.is_file() else None


def _token_text(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return "" if value is None else str(value)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    """transformers' ``tojson`` (plain ``json.dumps``, key order kept, no HTML escaping), which chat
    templates use to write tools and call arguments; Jinja's own sorts keys and escapes ``<``."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def load_prompt_counter(weights_path: Path | str) -> PromptCounter:
    folder = Path(weights_path)
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        return PromptCounter()
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    template_source = _chat_template(folder, config)
    if template_source is None:
        return PromptCounter(count=count)

    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = _tojson
    template = env.from_string(template_source)
    specials = {
        name: _token_text(config.get(name)) for name in ("bos_token", "eos_token", "unk_token", "pad_token")
    }

    def render(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        return template.render(messages=messages, tools=tools, add_generation_prompt=True, **specials)

    return PromptCounter(count=count, render_chat=render)
