"""Prompt rendering and length checks shared by the backends that tokenize in the replica.

Every backend renders a chat with the model's own chat template (``apply_chat_template`` of the folder's
tokenizer) and refuses prompts that do not fit, with the same OpenAI-style messages.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Callable
from typing import Any, TypeVar

from jinja2.exceptions import TemplateError

from backends.base import ChatMessage, ChatPrompt, Prompt, TextPrompt, TokenPrompt
from backends.errors import ContextLengthExceeded, InvalidRequest

T = TypeVar("T")


def _arguments(text: str) -> Any:
    # Templates write arguments with ``| tojson`` (Qwen, Llama 3.1, GLM-4): hand them the object, as
    # vLLM's server does; text that is not JSON stays text.
    try:
        return json.loads(text)
    except ValueError:
        return text


def template_message(message: ChatMessage) -> dict[str, Any]:
    """One message as Hugging Face chat templates read it (tool calls and tool results included)."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": _arguments(call.arguments)},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def template_inputs(prompt: ChatPrompt) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The messages and tools a chat template renders (tools None when the request has none)."""
    messages = [template_message(m) for m in prompt.messages]
    tools = [t.openai_dict() for t in prompt.tools] or None
    return messages, tools


def render_prompt(tokenizer: Any, prompt: Prompt, vocab_size: int) -> list[int]:
    """The prompt's token ids: chats through the chat template, texts encoded, token ids checked."""
    if isinstance(prompt, ChatPrompt):
        messages, tools = template_inputs(prompt)
        try:
            ids = tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=False
            )
        except TemplateError as exc:  # the template refuses the conversation (raise_exception)
            raise InvalidRequest(
                f"This model's chat template cannot render these messages: {exc}", param="messages"
            ) from None
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


class PromptRenderer:
    """Renders prompts off the event loop, one at a time, in a thread of its own.

    One thread, not the loop's shared pool: a Hugging Face fast tokenizer is not safe to use from several
    threads at once, and vLLM's tokenizer guards it with a pool that deep-copies the whole tokenizer for
    each concurrent caller: profiled at c=16 on 2 cores, those copies were a fifth of the replica's CPU,
    taken from the engine. Rendering one prompt takes about a millisecond, so a single thread keeps up.
    """

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")

    async def render(self, prompt: Prompt) -> list[int]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._thread, render_prompt, self._tokenizer, prompt, self._vocab_size
        )

    async def render_many(self, prompts: list[Prompt]) -> list[list[int]]:
        """Several prompts in one hop to the thread (a pooling request's inputs)."""
        return await self.run(
            lambda tokenizer: [render_prompt(tokenizer, p, self._vocab_size) for p in prompts]
        )

    async def run(self, work: Callable[[Any], T]) -> T:
        """``work(tokenizer)`` in the tokenizer's thread (e.g. encoding query-document pairs)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, self._tokenizer)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


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
