"""What an ``openai_upstream`` answer may hold, checked against what its request allowed.

An upstream declared to enforce them (``structured_outputs``, ``tool_choice_auto`` in its options) gets
``response_format`` and tools passed on, but it is another party's server: the gateway checks what comes
back before it bills it as an answer. A choice that ended by itself must hold what was asked: JSON that
fits the ``json_schema`` (a JSON object for ``json_object``); with ``tool_choice`` ``required`` or a named
function, at least one call (only that function's); calls only to functions offered, with arguments that
parse as a JSON object and fit the function's parameters; none with ``tool_choice: "none"``; at most one
without ``parallel_tool_calls``. A choice cut by ``max_tokens`` (``length``) is not held to a shape it had
no room for, but text where a call was forced is out of bounds even then (an upstream that ignored the
forced choice). What does not fit is ``InvalidUpstreamAnswer`` (502): before the first byte for a whole answer
(the model's next deployment may take the request), as the stream's error event after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from backends.base import ChoiceDelta, GenerationRequest
from backends.errors import InvalidRequest, InvalidUpstreamAnswer
from backends.tools import ToolCallDelta, merge_tool_calls


def refuse_undeclared(request: GenerationRequest, structured_outputs: bool, tool_choice_auto: bool) -> None:
    """A 400 for what the upstream was not declared to do (the gateway places such requests elsewhere)."""
    tools = request.tools
    if (request.structured is not None or (tools is not None and tools.forced)) and not structured_outputs:
        raise InvalidRequest(
            "This model's upstream is not declared to enforce response_format or forced tool choices "
            "(openai_upstream option structured_outputs).",
            param="response_format" if request.structured is not None else "tool_choice",
        )
    if tools is not None and tools.choice == "auto" and not tool_choice_auto:
        raise InvalidRequest(
            "This model's upstream is not declared to read tool calls on its own (openai_upstream option "
            "tool_choice_auto); use tool_choice 'required' or name a function.",
            param="tool_choice",
        )


@dataclass
class _Choice:
    text: list[str] = field(default_factory=list)
    calls: list[ToolCallDelta] = field(default_factory=list)
    finish: str | None = None


@dataclass
class AnswerCheck:
    """Collects an answer's choices as they stream, then ``verify`` says whether they fit the request."""

    request: GenerationRequest
    choices: dict[int, _Choice] = field(default_factory=dict)

    @property
    def needed(self) -> bool:
        return self.request.tools is not None or self.request.structured is not None

    def take(self, deltas: list[ChoiceDelta]) -> None:
        for delta in deltas:
            choice = self.choices.setdefault(delta.index, _Choice())
            choice.text.append(delta.text)
            if delta.tool_calls:
                choice.calls = merge_tool_calls(choice.calls, delta.tool_calls)
            if delta.finish_reason is not None:
                choice.finish = delta.finish_reason

    def verify(self) -> None:
        tools = self.request.tools
        forced = tools is not None and tools.forced
        for index, choice in sorted(self.choices.items()):
            if choice.finish == "length":  # cut: only text where a call was forced is out of bounds
                problem = None
                if forced and not choice.calls and "".join(choice.text).strip():
                    problem = "holds text instead of the tool call tool_choice forced"
            else:
                problem = self._calls_problem(choice.calls) or self._content_problem(choice)
            if problem is not None:
                raise InvalidUpstreamAnswer(f"The model endpoint's answer (choice {index}) {problem}.")

    def _calls_problem(self, calls: list[ToolCallDelta]) -> str | None:
        tools = self.request.tools
        if tools is None or tools.choice == "none":
            return "holds a tool call although no tool could be called" if calls else None
        if tools.forced and not calls:
            return "holds no tool call although tool_choice required one"
        if not tools.parallel and len(calls) > 1:
            return f"holds {len(calls)} tool calls although parallel_tool_calls is false"
        for call in calls:
            function = tools.function(call.name or "")
            if function is None or (tools.choice == "named" and call.name != tools.name):
                return f"calls {call.name!r}, a function it was not offered"
            try:
                arguments = json.loads(call.arguments or "{}")
            except ValueError:
                return f"calls {call.name!r} with arguments that are not JSON"
            if not isinstance(arguments, dict):
                return f"calls {call.name!r} with arguments that are not a JSON object"
            if (reason := _misfit(arguments, function.arguments_schema)) is not None:
                return f"calls {call.name!r} with arguments that do not fit its parameters ({reason})"
        return None

    def _content_problem(self, choice: _Choice) -> str | None:
        structured = self.request.structured
        if structured is None or choice.calls:
            return None
        try:
            value = json.loads("".join(choice.text))
        except ValueError:
            return "is not JSON although response_format asked for it"
        if structured.json_schema is None:
            return None if isinstance(value, dict) else "is not a JSON object (response_format json_object)"
        reason = _misfit(value, json.loads(structured.json_schema))
        return None if reason is None else f"does not fit the response_format schema ({reason})"


def _misfit(value: Any, schema: dict[str, Any]) -> str | None:
    """Why ``value`` does not fit ``schema`` (None: it fits)."""
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "the top level"
    return f"at {where}: {error.message[:200]}"
