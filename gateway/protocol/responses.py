"""OpenAI response bodies and stream chunks, built from backend chunks.

Responses are plain dicts shaped as OpenAI sends them; they are built per streamed token, so no model
validation runs on this path.
"""

from __future__ import annotations

import time
from typing import Any

from backends.base import ChoiceDelta, GenerationChunk, TokenLogprob, Usage
from backends.tools import ToolCallDelta
from gateway.protocol.reasoning import ThinkSplitter, split_reasoning

Json = dict[str, Any]


def usage_body(usage: Usage | None) -> Json | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _token_bytes(token: str) -> list[int]:
    return list(token.encode("utf-8"))


def chat_logprobs(items: list[TokenLogprob] | None) -> Json | None:
    if items is None:
        return None
    return {
        "content": [
            {
                "token": item.token,
                "logprob": item.logprob,
                "bytes": _token_bytes(item.token),
                "top_logprobs": [
                    {"token": t.token, "logprob": t.logprob, "bytes": _token_bytes(t.token)} for t in item.top
                ],
            }
            for item in items
        ],
        "refusal": None,
    }


def completion_logprobs(items: list[TokenLogprob] | None, text_offset: int) -> Json | None:
    if items is None:
        return None
    offsets: list[int] = []
    for item in items:
        offsets.append(text_offset)
        text_offset += len(item.token)
    return {
        "tokens": [item.token for item in items],
        "token_logprobs": [item.logprob for item in items],
        "top_logprobs": [{t.token: t.logprob for t in item.top} for item in items],
        "text_offset": offsets,
    }


def tool_call_piece(piece: ToolCallDelta) -> Json:
    """One ``delta.tool_calls`` item as OpenAI streams it: id, type and name on a call's first piece."""
    if piece.id is None and piece.name is None:
        return {"index": piece.index, "function": {"arguments": piece.arguments}}
    return {
        "index": piece.index,
        "id": piece.id,
        "type": "function",
        "function": {"name": piece.name, "arguments": piece.arguments},
    }


class ChatFormatter:
    """Builds ``chat.completion`` bodies and ``chat.completion.chunk`` events for one request.

    With ``reasoning`` set, ``<think>…</think>`` text goes to ``reasoning_content`` (DeepSeek-R1 style).
    """

    def __init__(
        self, request_id: str, model: str, n: int, reasoning: bool = False, service_tier: str | None = None
    ) -> None:
        self.id = request_id
        self.model = model
        self.created = int(time.time())
        self.n = n
        self.service_tier = service_tier
        """The tier that served the request, echoed as OpenAI does when the request named one."""
        self._splitters: dict[int, ThinkSplitter] | None = {} if reasoning else None

    def _message(self, choice: ChoiceDelta) -> Json:
        if self._splitters is None:
            message: Json = {"role": "assistant", "content": choice.text}
        else:
            reasoning, content = split_reasoning(choice.text)
            message = {"role": "assistant", "content": content, "reasoning_content": reasoning or None}
        if choice.tool_calls:
            message["content"] = message["content"] or None
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in choice.tool_calls
            ]
        return message

    def _delta(self, delta: ChoiceDelta) -> Json:
        body = self._text_delta(delta)
        if delta.tool_calls:
            body["tool_calls"] = [tool_call_piece(piece) for piece in delta.tool_calls]
        return body

    def _text_delta(self, delta: ChoiceDelta) -> Json:
        if self._splitters is None:
            return {"content": delta.text} if delta.text else {}
        splitter = self._splitters.setdefault(delta.index, ThinkSplitter())
        reasoning, content = splitter.feed(delta.text)
        if delta.finish_reason is not None:
            tail_reasoning, tail_content = splitter.finish()
            reasoning, content = reasoning + tail_reasoning, content + tail_content
        body: Json = {}
        if reasoning:
            body["reasoning_content"] = reasoning
        if content:
            body["content"] = content
        return body

    def _envelope(self, obj: str, choices: list[Json], usage: Usage | None) -> Json:
        body: Json = {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.service_tier is not None:
            body["service_tier"] = self.service_tier
        if obj == "chat.completion" or usage is not None:
            body["usage"] = usage_body(usage)
        return body

    def completion(self, whole: GenerationChunk) -> Json:
        choices = [
            {
                "index": c.index,
                "message": self._message(c),
                "logprobs": chat_logprobs(c.logprobs),
                "finish_reason": c.finish_reason,
            }
            for c in whole.choices
        ]
        return self._envelope("chat.completion", choices, whole.usage)

    def role_chunk(self) -> Json:
        choices = [
            {
                "index": i,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
            for i in range(self.n)
        ]
        return self._envelope("chat.completion.chunk", choices, None)

    def delta_chunk(self, deltas: list[ChoiceDelta]) -> Json | None:
        choices = []
        for d in deltas:
            delta = self._delta(d)
            if delta or d.finish_reason or d.logprobs:
                choices.append(
                    {
                        "index": d.index,
                        "delta": delta,
                        "logprobs": chat_logprobs(d.logprobs),
                        "finish_reason": d.finish_reason,
                    }
                )
        if not choices:
            return None
        return self._envelope("chat.completion.chunk", choices, None)

    def usage_chunk(self, usage: Usage) -> Json:
        return self._envelope("chat.completion.chunk", [], usage)


class CompletionFormatter:
    """Builds ``text_completion`` bodies and stream events for one request."""

    def __init__(self, request_id: str, model: str) -> None:
        self.id = request_id
        self.model = model
        self.created = int(time.time())
        self._offsets: dict[int, int] = {}

    def _envelope(self, choices: list[Json], usage: Usage | None, final: bool) -> Json:
        body: Json = {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if final or usage is not None:
            body["usage"] = usage_body(usage)
        return body

    def _choice(self, delta: ChoiceDelta) -> Json:
        offset = self._offsets.get(delta.index, 0)
        self._offsets[delta.index] = offset + len(delta.text)
        return {
            "index": delta.index,
            "text": delta.text,
            "logprobs": completion_logprobs(delta.logprobs, offset),
            "finish_reason": delta.finish_reason,
        }

    def completion(self, whole: GenerationChunk) -> Json:
        return self._envelope([self._choice(c) for c in whole.choices], whole.usage, final=True)

    def delta_chunk(self, deltas: list[ChoiceDelta]) -> Json | None:
        choices = [self._choice(d) for d in deltas if d.text or d.finish_reason or d.logprobs]
        if not choices:
            return None
        return self._envelope(choices, None, final=False)

    def usage_chunk(self, usage: Usage) -> Json:
        return self._envelope([], usage, final=False)
