"""Prompt rendering and length checks shared by the backends that tokenize in the replica.

Every backend renders a chat with the model's own chat template (``apply_chat_template`` of the folder's
tokenizer) and refuses prompts that do not fit, with the same OpenAI-style messages.
"""

from __future__ import annotations

from typing import Any

from backends.base import ChatPrompt, Prompt, TextPrompt, TokenPrompt
from gateway.errors import ContextLengthExceeded, InvalidRequest


def render_prompt(tokenizer: Any, prompt: Prompt, vocab_size: int) -> list[int]:
    """The prompt's token ids: chats through the chat template, texts encoded, token ids checked."""
    if isinstance(prompt, ChatPrompt):
        messages = [{"role": m.role, "content": m.content} for m in prompt.messages]
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return list(ids)
    if isinstance(prompt, TextPrompt):
        return list(tokenizer.encode(prompt.text))
    if isinstance(prompt, TokenPrompt):
        bad = [t for t in prompt.token_ids if not 0 <= t < vocab_size]
        if bad:
            raise InvalidRequest(
                f"Token id {bad[0]} is out of range for this model's vocabulary (0..{vocab_size - 1}).",
                param="prompt",
            )
        return list(prompt.token_ids)
    raise InvalidRequest("Unsupported prompt type.", param="prompt")


def completion_budget(limit: int, prompt_len: int, requested: int | None) -> int:
    """``max_tokens`` for a prompt of ``prompt_len`` in a context of ``limit``; the rest if not given."""
    if prompt_len == 0:
        raise InvalidRequest("The prompt is empty.", param="prompt")
    if prompt_len >= limit:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {limit} tokens. However, your prompt has "
            f"{prompt_len} tokens. Please reduce the length of the messages or prompt.",
            param="messages",
        )
    if requested is None:
        return limit - prompt_len
    if prompt_len + requested > limit:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt_len + requested} tokens ({prompt_len} in the messages, {requested} in "
            "the completion). Please reduce the length of the messages or completion.",
            param="max_tokens",
        )
    return requested
