"""Tools, tool choices, tool messages and response formats at the edge: accepted in OpenAI's wire format,
refused with a 400 naming the parameter when wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from backends.base import ChatPrompt
from backends.tools import tool_constraint
from gateway.errors import InvalidRequest
from gateway.protocol.requests import ChatCompletionRequest
from gateway.protocol.tools import MAX_SCHEMA_BYTES

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
NOW = {"type": "function", "function": {"name": "now"}}  # no parameters: a zero-argument function
BASE: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def body(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({**BASE, **fields})


def test_tools_become_a_plan_and_are_rendered_with_the_prompt() -> None:
    request = body(tools=[WEATHER, NOW], tool_choice="required", parallel_tool_calls=False)
    plan = request.tool_plan()
    assert plan is not None and plan.choice == "required" and not plan.parallel
    assert [t.name for t in plan.tools] == ["get_weather", "now"]
    assert plan.tools[1].parameters == {"type": "object", "properties": {}}
    prompt = request.prompt(plan)
    assert isinstance(prompt, ChatPrompt) and prompt.tools == plan.tools
    schema = json.loads(tool_constraint(plan).json_schema)  # type: ignore[union-attr,arg-type]
    assert schema["maxItems"] == 1 and len(schema["items"]["anyOf"]) == 2


def test_named_choice_constrains_to_that_functions_parameters() -> None:
    request = body(
        tools=[WEATHER, NOW], tool_choice={"type": "function", "function": {"name": "get_weather"}}
    )
    plan = request.tool_plan()
    assert plan is not None and plan.choice == "named" and plan.name == "get_weather"
    constraint = tool_constraint(plan)
    assert constraint is not None
    assert json.loads(constraint.json_schema or "") == WEATHER["function"]["parameters"]


def test_auto_is_the_default_and_none_is_not_constrained() -> None:
    assert body(tools=[WEATHER]).tool_plan().choice == "auto"  # type: ignore[union-attr]
    assert tool_constraint(body(tools=[WEATHER], tool_choice="none").tool_plan()) is None
    assert body().tool_plan() is None


def test_history_with_tool_calls_and_tool_results() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    request = body(messages=messages, tools=[WEATHER])
    assert request.unsupported() is None
    prompt = request.prompt(request.tool_plan())
    assert isinstance(prompt, ChatPrompt)
    assistant, tool = prompt.messages[1], prompt.messages[2]
    assert assistant.content == "" and assistant.tool_calls[0].name == "get_weather"
    assert tool.role == "tool" and tool.tool_call_id == "call_1" and tool.content == "sunny"


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "tool", "tool_call_id": "call_9", "content": "x"}], "messages[0].tool_call_id"),
        ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id"),
    ],
)
def test_a_tool_message_without_a_matching_call_is_refused(messages: list[Any], param: str) -> None:
    problem = body(messages=messages).unsupported()
    assert problem is not None and problem.param == param


def test_a_tool_without_a_name_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        body(tools=[{"type": "function", "function": {"parameters": {"type": "object"}}}])
    assert info.value.errors()[0]["loc"][:3] == ("tools", 0, "function")


@pytest.mark.parametrize("name", ["", "has space", "x" * 65])
def test_function_names_openai_refuses_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        body(tools=[{"type": "function", "function": {"name": name}}])


@pytest.mark.parametrize(
    "parameters",
    [
        {"type": "object", "properties": {"city": {"type": "no-such-type"}}},
        {"type": "object", "required": "city"},
        {"type": "string"},
    ],
)
def test_parameters_that_are_not_an_object_json_schema_are_refused(parameters: dict[str, Any]) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": parameters}}
    with pytest.raises(InvalidRequest) as info:
        body(tools=[tool]).tool_plan()
    assert info.value.param == "tools[0].function.parameters"


def test_a_schema_too_large_is_refused() -> None:
    properties = {f"p{i}": {"type": "string", "description": "x" * 100} for i in range(400)}
    assert len(json.dumps(properties)) > MAX_SCHEMA_BYTES
    tool = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object", "properties": properties}},
    }
    with pytest.raises(InvalidRequest, match="too large"):
        body(tools=[tool]).tool_plan()


def test_tool_choice_naming_an_unknown_function_is_refused() -> None:
    request = body(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_time"}})
    with pytest.raises(InvalidRequest, match="get_time") as info:
        request.tool_plan()
    assert info.value.param == "tool_choice"


def test_tool_choice_without_tools_and_duplicate_names_are_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        body(tool_choice="required").tool_plan()
    assert info.value.param == "tool_choice"
    with pytest.raises(InvalidRequest, match="Duplicate"):
        body(tools=[WEATHER, WEATHER]).tool_plan()


def test_response_formats() -> None:
    assert body(response_format={"type": "text"}).structured() is None
    assert body(response_format={"type": "json_object"}).structured().json_object  # type: ignore[union-attr]
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}
    structured = body(response_format=fmt).structured()
    assert structured is not None and json.loads(structured.json_schema or "") == schema


def test_a_response_format_schema_that_is_not_a_json_schema_is_refused() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}
    with pytest.raises(InvalidRequest) as info:
        body(response_format=fmt).structured()
    assert info.value.param == "response_format.json_schema.schema"
    with pytest.raises(ValidationError):
        body(response_format={"type": "xml"})
