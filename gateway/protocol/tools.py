"""Tools, tool choices and response formats of chat requests: OpenAI's wire format, checked at the edge.

What is refused here with a 400 naming the parameter: a tool without a name (or with a name OpenAI would
refuse), parameters that are not a JSON schema or not an object schema, too many tools or a schema too
large, a ``tool_choice`` naming a function that is not among the tools (or any tool choice without tools),
a ``json_schema`` response format whose schema is not a JSON schema. A schema feature the engine cannot
enforce is refused by the engine, before the first token, also as a 400.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field

from backends.tools import StructuredOutput, ToolFunction, ToolPlan
from gateway.errors import InvalidRequest

MAX_TOOLS = 128
MAX_SCHEMA_BYTES = 32_768
"""The largest JSON schema (one tool's parameters, or a response format's schema), as compact JSON."""
FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FunctionDefinition(_Lenient):
    name: Annotated[str, Field(pattern=FUNCTION_NAME)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(_Lenient):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class FunctionName(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    type: Literal["function"] = "function"
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class CalledFunction(_Lenient):
    name: str
    arguments: str


class MessageToolCall(_Lenient):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: CalledFunction


class JsonSchemaFormat(_Lenient):
    name: Annotated[str, Field(pattern=FUNCTION_NAME)] = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextFormat(_Lenient):
    type: Literal["text"]


class JsonObjectFormat(_Lenient):
    type: Literal["json_object"]


class JsonSchemaResponseFormat(_Lenient):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaResponseFormat, Field(discriminator="type")
]


def check_schema(schema: dict[str, Any], param: str, *, object_only: bool) -> str:
    """The schema as compact JSON text, or a 400 saying what is wrong with it."""
    text = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode("utf-8")) > MAX_SCHEMA_BYTES:
        raise InvalidRequest(
            f"The JSON schema in '{param}' is too large ({len(text)} characters; at most "
            f"{MAX_SCHEMA_BYTES} bytes are allowed).",
            param=param,
        )
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the top level"
        raise InvalidRequest(
            f"Invalid schema in '{param}': {exc.message} (at {where}).", param=param
        ) from None
    if object_only and schema.get("type", "object") != "object":
        raise InvalidRequest(
            f"Invalid schema in '{param}': function parameters must be a JSON schema of type 'object', "
            f"got type {schema.get('type')!r}.",
            param=param,
        )
    return text


def tool_functions(tools: list[ToolDefinition]) -> tuple[ToolFunction, ...]:
    if len(tools) > MAX_TOOLS:
        raise InvalidRequest(f"At most {MAX_TOOLS} tools are allowed, got {len(tools)}.", param="tools")
    seen: set[str] = set()
    functions = []
    for i, tool in enumerate(tools):
        fn = tool.function
        if fn.name in seen:
            raise InvalidRequest(
                f"Duplicate function name '{fn.name}' in 'tools'.", param=f"tools[{i}].function.name"
            )
        seen.add(fn.name)
        params = None
        if fn.parameters is not None:
            params = check_schema(fn.parameters, f"tools[{i}].function.parameters", object_only=True)
        functions.append(ToolFunction(name=fn.name, description=fn.description, parameters_json=params))
    return tuple(functions)


def tool_plan(
    tools: list[ToolDefinition] | None, choice: ToolChoice | None, parallel: bool | None
) -> ToolPlan | None:
    """The request's tools and tool choice; None without tools (``tool_choice`` then must be absent or
    ``none``)."""
    if not tools:
        if choice is not None and choice != "none":
            raise InvalidRequest(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                param="tool_choice",
            )
        return None
    functions = tool_functions(tools)
    parallel = True if parallel is None else parallel
    if isinstance(choice, NamedToolChoice):
        name = choice.function.name
        if name not in {f.name for f in functions}:
            raise InvalidRequest(
                f"Invalid value for 'tool_choice': no function named '{name}' was specified in 'tools'.",
                param="tool_choice",
            )
        return ToolPlan(functions, "named", name=name, parallel=parallel)
    return ToolPlan(functions, choice or "auto", parallel=parallel)


def structured_output(
    response_format: TextFormat | JsonObjectFormat | JsonSchemaResponseFormat | None,
) -> StructuredOutput | None:
    if response_format is None or isinstance(response_format, TextFormat):
        return None
    if isinstance(response_format, JsonObjectFormat):
        return StructuredOutput(json_object=True)
    schema = response_format.json_schema.schema_
    if schema is None:
        return StructuredOutput(json_object=True)
    return StructuredOutput(
        json_schema=check_schema(schema, "response_format.json_schema.schema", object_only=False)
    )
