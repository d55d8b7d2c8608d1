"""The OpenAI wire format, without HTTP: a request's JSON body, streamed chunks read into ``ChoiceDelta``s
(logprobs, finish reasons, usage), and the fields of a model list or of an OpenAI-style error body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from backends.base import (
    ChatMessage,
    ChatPrompt,
    ChoiceDelta,
    FinishReason,
    GenerationRequest,
    Prompt,
    SamplingOptions,
    TextPrompt,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from backends.tools import StructuredOutput, ToolCallDelta, ToolPlan
from backends.upstream_usage import CompletionText, TokenCounter

REQUEST_FIELDS = frozenset(
    {
        "messages",
        "prompt",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
    }
)
"""The request fields a client can name: an upstream's ``param`` is passed on only when it is one."""


# -- the request -----------------------------------------------------------------------------------------


def request_body(
    request: GenerationRequest, model: str, continuous_usage: bool
) -> tuple[str, dict[str, Any]]:
    """The path and JSON body of the OpenAI request for ``request``, sent as ``model``: streamed with
    usage, or one non-streamed answer when the caller wants only the whole (``request.whole``)."""
    prompt, sampling = request.prompt, request.sampling
    body: dict[str, Any] = {"model": model, "stream": not request.whole}
    if not request.whole:
        stream_options: dict[str, bool] = {"include_usage": True}
        if continuous_usage:
            stream_options["continuous_usage_stats"] = True
        body["stream_options"] = stream_options
    if isinstance(prompt, ChatPrompt):
        path = "/chat/completions"
        body["messages"] = [_chat_message(m) for m in prompt.messages]
        if sampling.logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = sampling.logprobs
        body.update(_tool_fields(request.tools, request.structured))
    else:
        path = "/completions"
        body["prompt"] = prompt.text if isinstance(prompt, TextPrompt) else list(prompt.token_ids)
        if sampling.logprobs is not None:
            body["logprobs"] = sampling.logprobs
    body.update(_sampling_fields(sampling))
    return path, body


def _chat_message(message: ChatMessage) -> dict[str, Any]:
    """One message as OpenAI's API takes it, with the calls an assistant made and a tool's call id."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _tool_fields(tools: ToolPlan | None, structured: StructuredOutput | None) -> dict[str, Any]:
    """``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``response_format`` as the caller sent them."""
    fields: dict[str, Any] = {}
    if tools is not None:
        fields["tools"] = [t.openai_dict() for t in tools.tools]
        choice: Any = tools.choice
        if tools.choice == "named":
            choice = {"type": "function", "function": {"name": tools.name}}
        fields["tool_choice"] = choice
        if not tools.parallel:
            fields["parallel_tool_calls"] = False
    if structured is not None and structured.json_schema is not None:
        schema = json.loads(structured.json_schema)
        fields["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": schema, "strict": True},
        }
    elif structured is not None and structured.json_object:
        fields["response_format"] = {"type": "json_object"}
    return fields


def _sampling_fields(sampling: SamplingOptions) -> dict[str, Any]:
    """The request fields for the options that differ from the upstream's defaults."""
    fields: dict[str, Any] = {}
    if sampling.max_tokens is not None:
        fields["max_tokens"] = sampling.max_tokens
    if sampling.temperature is not None:
        fields["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        fields["top_p"] = sampling.top_p
    if sampling.n != 1:
        fields["n"] = sampling.n
    if sampling.stop:
        fields["stop"] = list(sampling.stop)
    if sampling.seed is not None:
        fields["seed"] = sampling.seed
    if sampling.presence_penalty:
        fields["presence_penalty"] = sampling.presence_penalty
    if sampling.frequency_penalty:
        fields["frequency_penalty"] = sampling.frequency_penalty
    if sampling.ignore_eos:
        fields["ignore_eos"] = True
    return fields


# -- one answer ------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """What one streamed answer has delivered so far, and the usage to put on its next chunk."""

    prompt: Prompt
    n: int
    counter: TokenCounter
    texts: dict[int, CompletionText] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    exact: Usage | None = None
    exact_is_current: bool = False
    prompt_estimate: int | None = None
    sent_usage: Usage | None = None

    def take(self, payload: dict[str, Any], chat: bool) -> list[ChoiceDelta]:
        """The deltas of one upstream chunk (choices already finished are ignored from then on)."""
        deltas: list[ChoiceDelta] = []
        choices = payload.get("choices") or []
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = int(choice.get("index") or 0)
            if index in self.finished:
                continue
            calls = None
            if chat:
                delta = choice.get("delta") or {}
                text = delta.get("content") if isinstance(delta, dict) else None
                logprobs = _chat_logprobs(choice.get("logprobs"))
                calls = _tool_call_deltas(delta.get("tool_calls") if isinstance(delta, dict) else None)
            else:
                text = choice.get("text")
                logprobs = _completion_logprobs(choice.get("logprobs"))
            text = text if isinstance(text, str) else ""
            finish = _finish_reason(choice.get("finish_reason"))
            if not text and finish is None and not logprobs and not calls:
                continue
            self.texts.setdefault(index, CompletionText()).parts.append(text)
            if finish is not None:
                self.finished.add(index)
            deltas.append(
                ChoiceDelta(index=index, text=text, finish_reason=finish, logprobs=logprobs, tool_calls=calls)
            )
        usage = _usage(payload.get("usage"))
        # vLLM's per-chunk usage with n > 1 counts only that chunk's choice; the summary (no choices) sums.
        if usage is not None and (self.n == 1 or not choices):
            self.exact, self.exact_is_current = usage, True
        elif deltas:
            self.exact_is_current = False
        return deltas

    def usage(self, final: bool = False) -> Usage:
        """Cumulative usage: the upstream's when its latest chunk carried it, else estimated here."""
        if self.exact is not None and self.exact_is_current:
            return self.exact
        if self.prompt_estimate is None:
            self.prompt_estimate = self.counter.prompt_tokens(self.prompt)
        if final:
            completion = sum(self.counter.count(t.text()) for t in self.texts.values())
        else:
            completion = sum(t.estimate(self.counter) for t in self.texts.values())
        if self.exact is not None:  # counts the upstream reported earlier stay the floor
            prompt, cached = self.exact.prompt_tokens, self.exact.cached_tokens
            completion = max(completion, self.exact.completion_tokens)
        else:
            prompt, cached = self.prompt_estimate, 0
        return Usage(prompt, completion, cached, estimated=True)

    def complete(self) -> bool:
        return all(i in self.finished for i in range(self.n)) and self.finished >= set(self.texts)


def whole_as_events(payload: dict[str, Any], chat: bool) -> list[dict[str, Any]]:
    """A non-streamed answer as the two stream events ``Answer.take`` reads: all choices, then usage."""
    choices = []
    for choice in payload.get("choices") or []:
        if isinstance(choice, dict) and chat:
            choice = {**choice, "delta": choice.get("message") or {}}
        choices.append(choice)
    return [{"choices": choices}, {"choices": [], "usage": payload.get("usage")}]


def _tool_call_deltas(data: object) -> list[ToolCallDelta] | None:
    """The pieces of tool calls in one delta (a whole answer's calls have no ``index``: their order)."""
    if not isinstance(data, list) or not data:
        return None
    pieces = []
    for position, call in enumerate(data):
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        index, name, arguments = call.get("index", position), function.get("name"), function.get("arguments")
        pieces.append(
            ToolCallDelta(
                index=index if isinstance(index, int) else position,
                id=call.get("id") if isinstance(call.get("id"), str) else None,
                name=name if isinstance(name, str) else None,
                arguments=arguments if isinstance(arguments, str) else "",
            )
        )
    return pieces or None


def _finish_reason(reason: object) -> FinishReason | None:
    if reason is None:
        return None
    if reason in ("stop", "length", "abort", "tool_calls"):
        return reason  # type: ignore[return-value]
    return "stop"  # eos, tool_calls, content_filter, ...: the answer is over


def _usage(data: object) -> Usage | None:
    if not isinstance(data, dict):
        return None
    try:
        prompt = int(data["prompt_tokens"])
        completion = int(data.get("completion_tokens") or 0)
        details = data.get("prompt_tokens_details")
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    except (KeyError, TypeError, ValueError):
        return None
    return Usage(prompt, completion, cached)


def _logprob(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("-inf")


def _chat_logprobs(data: object) -> list[TokenLogprob] | None:
    content = data.get("content") if isinstance(data, dict) else None
    if not isinstance(content, list):
        return None
    result = []
    for entry in content:
        if not isinstance(entry, dict):
            continue
        top = tuple(
            TopLogprob(str(alt.get("token", "")), _logprob(alt.get("logprob")))
            for alt in entry.get("top_logprobs") or []
            if isinstance(alt, dict)
        )
        result.append(TokenLogprob(str(entry.get("token", "")), _logprob(entry.get("logprob")), top))
    return result


def _completion_logprobs(data: object) -> list[TokenLogprob] | None:
    if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
        return None
    tokens: list[Any] = data["tokens"]
    values: list[Any] = data.get("token_logprobs") or []
    tops: list[Any] = data.get("top_logprobs") or []
    result = []
    for i, token in enumerate(tokens):
        alternatives = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        top = tuple(TopLogprob(str(t), _logprob(lp)) for t, lp in alternatives.items())
        result.append(TokenLogprob(str(token), _logprob(values[i] if i < len(values) else None), top))
    return result


# -- model list and error bodies -------------------------------------------------------------------------


def error_fields(body: object) -> tuple[str, str | None, str | None]:
    """(message, code, param) from an error body: OpenAI's, vLLM's, TGI's or FastAPI's shape, or text."""
    if isinstance(body, (bytes, str)):
        raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            body = json.loads(raw)
        except ValueError:
            return raw.strip(), None, None
    if not isinstance(body, dict):
        return str(body), None, None
    error = body.get("error", body)
    if isinstance(error, str):  # TGI: {"error": "...", "error_type": "validation"}
        return error, None, None
    if not isinstance(error, dict):
        return str(error), None, None
    message = error.get("message", error.get("detail", ""))
    if isinstance(message, list):  # FastAPI validation: [{"loc": [...], "msg": "..."}]
        message = "; ".join(
            str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in message
        )
    code, param = error.get("code"), error.get("param")
    return str(message), code if isinstance(code, str) else None, param if isinstance(param, str) else None


def model_ids(content: bytes) -> list[str] | None:
    """The model ids of an OpenAI model list (``GET /models``), or None when the answer is not one."""
    try:
        body = json.loads(content)
    except ValueError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]
