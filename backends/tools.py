"""Tool calling and structured outputs: the plain data that crosses the backend interface.

Pure Python and picklable, like the rest of ``backends/base.py``. JSON schemas travel as JSON text so the
dataclasses stay frozen and hashable.

How a request becomes constrained decoding (as vLLM's own server does it, ``vllm.tool_parsers.utils``):

* ``response_format`` ``json_object`` → any JSON object; ``json_schema`` → that schema.
* ``tool_choice`` naming a function → the output *is* that function's arguments (its parameters schema).
* ``tool_choice: "required"`` → the output is a JSON array of ``{"name": ..., "parameters": {...}}``, one
  item per call (at most one when ``parallel_tool_calls`` is false).
* ``tool_choice: "auto"`` is not constrained: the model writes calls in its family's own format and the
  model's tool parser (``ToolPlan.parser``, a vLLM tool parser name such as ``hermes``) finds them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

ToolChoiceMode = Literal["none", "auto", "required", "named"]


@dataclass(frozen=True)
class ToolFunction:
    name: str
    description: str | None = None
    parameters_json: str | None = None
    """The function's parameters as JSON-schema text; None: the function takes no parameters."""

    @property
    def parameters(self) -> dict[str, Any]:
        if self.parameters_json is None:
            return {"type": "object", "properties": {}}
        params: dict[str, Any] = json.loads(self.parameters_json)
        return params

    @property
    def arguments_schema(self) -> dict[str, Any]:
        """What constrained decoding enforces for the arguments: the parameters, or, for a function that
        takes none, exactly ``{}`` (an open empty object lets a small model invent keys to max_tokens)."""
        if self.parameters_json is None:
            return {"type": "object", "properties": {}, "additionalProperties": False}
        return self.parameters

    def openai_dict(self) -> dict[str, Any]:
        """The tool as OpenAI's wire format (and Hugging Face chat templates) spell it."""
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        function["parameters"] = self.parameters
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolPlan:
    """The tools of one request and how the model may use them."""

    tools: tuple[ToolFunction, ...]
    choice: ToolChoiceMode = "auto"
    name: str | None = None
    """The function a ``named`` choice forces."""
    parallel: bool = True
    parser: str | None = None
    """The vLLM tool parser of the model's family for ``auto`` (e.g. ``hermes``, ``llama3_json``)."""

    def function(self, name: str) -> ToolFunction | None:
        return next((t for t in self.tools if t.name == name), None)

    @property
    def forced(self) -> bool:
        """A call is forced (``required`` or a named function): enforced by constrained decoding."""
        return self.choice in ("required", "named")


@dataclass(frozen=True)
class StructuredOutput:
    """A constraint the engine enforces while decoding: a JSON schema (as text) or any JSON object."""

    json_schema: str | None = None
    json_object: bool = False


def required_calls_schema(tools: tuple[ToolFunction, ...], parallel: bool) -> dict[str, Any]:
    """``tool_choice: "required"``: a non-empty array of calls to the given functions."""
    items = [
        {
            "properties": {
                "name": {"type": "string", "enum": [t.name]},
                "parameters": t.arguments_schema,
            },
            "required": ["name", "parameters"],
        }
        for t in tools
    ]
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"type": "object", "anyOf": items}}
    if not parallel:
        schema["maxItems"] = 1
    return schema


def tool_constraint(plan: ToolPlan | None) -> StructuredOutput | None:
    """The decoding constraint a tool choice needs (None for ``auto`` and ``none``)."""
    if plan is None:
        return None
    if plan.choice == "named":
        function = plan.function(plan.name or "")
        if function is None:
            raise ValueError(f"tool_choice names {plan.name!r}, which is not among the tools")
        return StructuredOutput(json_schema=json.dumps(function.arguments_schema))
    if plan.choice == "required":
        return StructuredOutput(json_schema=json.dumps(required_calls_schema(plan.tools, plan.parallel)))
    return None


@dataclass
class ToolCallDelta:
    """A piece of one tool call of a choice, as OpenAI streams it: the first piece of a call carries its
    ``id`` and function ``name``; later pieces carry argument text to append."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


def merge_tool_calls(into: list[ToolCallDelta], more: list[ToolCallDelta]) -> list[ToolCallDelta]:
    """Fold pieces into whole calls by index (arguments appended; id and name from their first piece)."""
    by_index = {call.index: call for call in into}
    for piece in more:
        acc = by_index.get(piece.index)
        if acc is None:
            acc = ToolCallDelta(index=piece.index, id=piece.id, name=piece.name, arguments=piece.arguments)
            by_index[piece.index] = acc
            into.append(acc)
            continue
        acc.id = acc.id or piece.id
        acc.name = acc.name or piece.name
        acc.arguments += piece.arguments
    return into
