"""Turning a choice's generated text into OpenAI tool calls, incrementally, inside the replica.

One ``ToolCallStream`` per choice reads the text deltas a backend produces and returns, for each, the
content to send and the tool-call pieces (``ToolCallDelta``): the first piece of a call carries its id and
name, later ones argument text. A whole answer is the merge of the same pieces (``merge_chunks``), so a
streamed answer always reassembles to the non-streamed one.

* ``named``: constrained decoding made the text the function's arguments; it streams as they come.
* ``required``: the text is a JSON array of ``{"name", "parameters"}`` (``backends.tools``); each call's
  name is sent once it is complete, its arguments once its object is (``partial_json_parser``, which vLLM
  ships with).
* ``auto``: the model's family format, read by vLLM's own tool parser for that family (``hermes`` for
  Qwen's ``<tool_call>`` blocks, ``llama3_json``, ``deepseek_v3``, ``glm45`` ...), imported lazily.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from backends.base import ChoiceDelta, GenerationRequest
from backends.errors import InvalidRequest
from backends.tools import StructuredOutput, ToolCallDelta, ToolPlan, tool_constraint


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class Parsed:
    """What one text delta turned into."""

    content: str = ""
    calls: list[ToolCallDelta] = field(default_factory=list)


def per_token(delta: str, token_ids: Sequence[int], tokenizer: Any) -> list[tuple[str, list[int]]]:
    """A delta of several tokens as one piece per token, as vLLM's server feeds its tool parsers: some
    (DeepSeek V3's) count marker tokens per step and lose calls when an engine step carries several tokens
    (which happens whenever the consumer falls behind and vLLM merges steps). A token that ends inside a
    character stays with the next; if the pieces do not add up to the delta, the delta goes whole."""
    if len(token_ids) <= 1 or tokenizer is None:
        return [(delta, list(token_ids))]
    pieces: list[tuple[str, list[int]]] = []
    sent, start = "", 0
    for end in range(1, len(token_ids) + 1):
        text = tokenizer.decode(list(token_ids[:end]), skip_special_tokens=False)
        if end < len(token_ids) and (text.endswith("\ufffd") or not text.startswith(sent)):
            continue
        pieces.append((text[len(sent) :], list(token_ids[start:end])))
        sent, start = text, end
    if sent != delta:
        return [(delta, list(token_ids))]
    return pieces


class _Named:
    def __init__(self, name: str) -> None:
        self._name = name
        self._started = False

    def feed(self, delta: str, text: str, done: bool) -> Parsed:
        if not self._started and (delta or done):
            self._started = True
            return Parsed(calls=[ToolCallDelta(index=0, id=new_call_id(), name=self._name, arguments=delta)])
        return Parsed(calls=[ToolCallDelta(index=0, arguments=delta)] if delta else [])


class _Required:
    def __init__(self) -> None:
        self._named = 0  # calls whose id and name were sent
        self._argued = 0  # calls whose arguments were sent

    def feed(self, delta: str, text: str, done: bool) -> Parsed:
        from partial_json_parser import Allow, loads

        items: Any
        try:
            items, complete = json.loads(text), True
        except ValueError:
            try:
                items = loads(text, Allow.ALL & ~Allow.STR)  # incomplete strings are left out
            except Exception:
                items = []
            complete = False
        if not isinstance(items, list):
            items = []
        out = Parsed()
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                break
            if i == self._named and isinstance(item.get("name"), str):
                out.calls.append(ToolCallDelta(index=i, id=new_call_id(), name=item["name"]))
                self._named += 1
            finished = complete or i < len(items) - 1
            if i == self._argued and i < self._named and finished:
                arguments = json.dumps(item.get("parameters", {}), ensure_ascii=False)
                out.calls.append(ToolCallDelta(index=i, arguments=arguments))
                self._argued += 1
        return out


class _Auto:
    """vLLM's tool parser of the model's family, fed as vLLM's own server feeds it."""

    def __init__(self, plan: ToolPlan, tokenizer: Any) -> None:
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
        from vllm.tool_parsers import ToolParserManager

        assert plan.parser is not None
        try:
            parser_cls = ToolParserManager.get_tool_parser(plan.parser)
        except KeyError:
            raise InvalidRequest(f"Unknown tool parser {plan.parser!r}.", param="tools") from None
        request: Any = ChatCompletionRequest.model_validate(
            {
                "model": "model",
                "messages": [{"role": "user", "content": ""}],
                "tools": [t.openai_dict() for t in plan.tools],
                "tool_choice": "auto",
            }
        )
        self._tokenizer = tokenizer
        self._parser = parser_cls(tokenizer, request.tools)
        self._request: Any = self._parser.adjust_request(request)
        self._ids: list[int] = []
        self._calls: dict[int, str] = {}  # index → id, as sent
        self._content = ""  # content sent so far

    def feed(self, delta: str, text: str, done: bool, token_ids: Sequence[int] = ()) -> Parsed:
        out = Parsed()
        previous = text[: len(text) - len(delta)]
        for piece, ids in per_token(delta, token_ids, self._tokenizer):
            self._step(previous, piece, ids, out)
            previous += piece
        if done and self._calls:
            rest = self._parser.get_remaining_unstreamed_args()
            if rest:
                out.calls.append(ToolCallDelta(max(self._calls), arguments=rest))
        elif done and text.startswith(self._content + out.content):
            # No call came: what the parser held back as a possible call start (a text ending in
            # "<tool_call", a JSON object that named no function) is content after all.
            out.content = text[len(self._content) :]
        self._content += out.content
        return out

    def _step(self, previous: str, delta: str, token_ids: Sequence[int], out: Parsed) -> None:
        previous_ids = list(self._ids)
        self._ids.extend(token_ids)
        if delta:
            message = self._parser.extract_tool_calls_streaming(
                previous,
                previous + delta,
                delta,
                previous_ids,
                list(self._ids),
                list(token_ids),
                self._request,
            )
            if message is not None:
                out.content += message.content or ""
                for call in message.tool_calls or []:
                    function = call.function
                    name = getattr(function, "name", None) if function is not None else None
                    arguments = getattr(function, "arguments", None) if function is not None else None
                    if call.index not in self._calls:
                        self._calls[call.index] = new_call_id()
                        piece = ToolCallDelta(call.index, self._calls[call.index], name, arguments or "")
                    else:
                        piece = ToolCallDelta(call.index, arguments=arguments or "")
                    out.calls.append(piece)

    def whole(self, text: str) -> Parsed:
        """The whole answer read at once with the parser's whole-text reading, as vLLM's server reads a
        non-streamed answer (some parsers' streaming reading assumes one token per step)."""
        info = self._parser.extract_tool_calls(text, self._request)
        if not info.tools_called:
            return Parsed(content=text)
        calls = [
            ToolCallDelta(i, new_call_id(), call.function.name, call.function.arguments or "{}")
            for i, call in enumerate(info.tool_calls)
        ]
        return Parsed(content=info.content or "", calls=calls)


class ToolCallStream:
    """Reads one choice's text and yields content and tool-call pieces (see the module docstring)."""

    def __init__(self, plan: ToolPlan, tokenizer: Any = None, whole: bool = False) -> None:
        self._text = ""
        self._whole = whole
        self.made_calls = False
        self._reader: _Named | _Required | _Auto
        if plan.choice == "named":
            self._reader = _Named(plan.name or "")
        elif plan.choice == "required":
            self._reader = _Required()
        else:
            self._reader = _Auto(plan, tokenizer)

    def feed(self, delta: str, done: bool = False, token_ids: Sequence[int] = ()) -> Parsed:
        self._text += delta
        if isinstance(self._reader, _Auto) and self._whole:
            parsed = self._reader.whole(self._text) if done else Parsed()
        elif isinstance(self._reader, _Auto):
            parsed = self._reader.feed(delta, self._text, done, token_ids)
        else:
            parsed = self._reader.feed(delta, self._text, done)
        if parsed.calls:
            self.made_calls = True
        return parsed


class ToolCallChoices:
    """Applies one ``ToolCallStream`` per choice to a backend's deltas: text becomes content and tool-call
    pieces, and a choice that made calls and stopped ends with ``finish_reason: "tool_calls"``.

    ``whole``: the caller wants only the whole answer; ``auto`` calls are then read from the whole text at
    the end. Streams feed the parser one engine step (one token) at a time, as vLLM's server does."""

    def __init__(self, plan: ToolPlan, tokenizer: Any = None, whole: bool = False) -> None:
        self._plan = plan
        self._tokenizer = tokenizer
        self._whole = whole
        self._streams: dict[int, ToolCallStream] = {}

    def apply(self, delta: ChoiceDelta, token_ids: Sequence[int] = ()) -> ChoiceDelta:
        stream = self._streams.get(delta.index)
        if stream is None:
            stream = self._streams[delta.index] = ToolCallStream(self._plan, self._tokenizer, self._whole)
        done = delta.finish_reason is not None
        parsed = stream.feed(delta.text, done, token_ids)
        finish = delta.finish_reason
        if finish == "stop" and stream.made_calls:
            finish = "tool_calls"
        return ChoiceDelta(
            index=delta.index,
            text=parsed.content,
            finish_reason=finish,
            logprobs=delta.logprobs,
            tool_calls=parsed.calls or None,
        )


def needs_stream(plan: ToolPlan | None) -> bool:
    """Whether a request's output goes through a ``ToolCallStream`` (not for ``none`` or no tools)."""
    return plan is not None and bool(plan.tools) and plan.choice != "none"


def decoding_constraint(request: GenerationRequest) -> StructuredOutput | None:
    """What a ``GenerationRequest`` asks the engine to enforce: a named or required tool choice wins
    over ``response_format`` (as in vLLM's server)."""
    return tool_constraint(request.tools) or request.structured
