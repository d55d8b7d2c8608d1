"""Tools and response formats through ``openai_upstream``: what is sent, how calls are read back, and what
an upstream's answer must hold (the real round trip is ``tests/e2e/test_openai_upstream.py``)."""

from __future__ import annotations

import json

import pytest

from backends.base import ChatMessage, ChatPrompt, ChoiceDelta, GenerationRequest, ToolCall
from backends.errors import InvalidRequest, InvalidUpstreamAnswer
from backends.openai_wire import Answer, request_body, whole_as_events
from backends.tools import StructuredOutput, ToolCallDelta, ToolFunction, ToolPlan
from backends.upstream_checks import AnswerCheck, refuse_undeclared
from backends.upstream_usage import TokenCounter

WEATHER = ToolFunction(
    "get_weather",
    parameters_json=json.dumps(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    ),
)
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def request(**fields: object) -> GenerationRequest:
    prompt = ChatPrompt(
        (
            ChatMessage("user", "weather?"),
            ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),)),
            ChatMessage("tool", "sunny", tool_call_id="call_1"),
        )
    )
    return GenerationRequest(request_id="r", prompt=prompt, **fields)  # type: ignore[arg-type]


def test_tools_history_and_response_format_are_sent_as_openai_spells_them() -> None:
    named = request(tools=ToolPlan((WEATHER,), choice="named", name="get_weather", parallel=False))
    _, body = request_body(named, "up", continuous_usage=False)
    assert body["tools"] == [WEATHER.openai_dict()]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False
    assistant, tool = body["messages"][1], body["messages"][2]
    assert assistant["content"] is None and assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    assert tool == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}
    schema = request(structured=StructuredOutput(json_schema=json.dumps(SCHEMA)))
    _, body = request_body(schema, "up", continuous_usage=False)
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    assert "tools" not in body


def test_streamed_and_whole_tool_calls_are_read_into_call_pieces() -> None:
    answer = Answer(request().prompt, 1, TokenCounter.__new__(TokenCounter))
    first = {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {"index": 0, "id": "c", "function": {"name": "get_weather", "arguments": ""}}
                    ]
                },
            }
        ]
    }
    rest = {
        "choices": [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]},
                "finish_reason": "tool_calls",
            }
        ]
    }
    deltas = answer.take(first, chat=True) + answer.take(rest, chat=True)
    assert deltas[0].tool_calls == [ToolCallDelta(0, "c", "get_weather", "")]
    assert deltas[1].tool_calls == [ToolCallDelta(0, None, None, '{"city"')]
    assert deltas[1].finish_reason == "tool_calls"
    whole = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{}"},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    answer = Answer(request().prompt, 1, TokenCounter.__new__(TokenCounter))
    (delta,) = [d for event in whole_as_events(whole, chat=True) for d in answer.take(event, chat=True)]
    assert delta.tool_calls == [ToolCallDelta(0, "c", "get_weather", "{}")]


def check(req: GenerationRequest, *deltas: ChoiceDelta) -> None:
    answer = AnswerCheck(req)
    answer.take(list(deltas))
    answer.verify()


def call(name: str, arguments: str) -> ChoiceDelta:
    return ChoiceDelta(0, tool_calls=[ToolCallDelta(0, "c", name, arguments)], finish_reason="tool_calls")


def test_an_answer_that_fits_the_request_passes() -> None:
    forced = request(tools=ToolPlan((WEATHER,), choice="required"))
    check(forced, call("get_weather", '{"city": "Oslo"}'))
    schema = request(structured=StructuredOutput(json_schema=json.dumps(SCHEMA)))
    check(schema, ChoiceDelta(0, '{"n": '), ChoiceDelta(0, "3}", finish_reason="stop"))
    check(schema, ChoiceDelta(0, '{"n": ', finish_reason="length"))  # cut by max_tokens: no room to fit


@pytest.mark.parametrize(
    ("req", "deltas", "problem"),
    [
        (
            request(tools=ToolPlan((WEATHER,), choice="required")),
            [ChoiceDelta(0, "no", finish_reason="stop")],
            "no tool call",
        ),
        (request(tools=ToolPlan((WEATHER,), choice="auto")), [call("delete_all", "{}")], "not offered"),
        (request(tools=ToolPlan((WEATHER,), choice="auto")), [call("get_weather", "{city")], "not JSON"),
        (
            request(tools=ToolPlan((WEATHER,), choice="auto")),
            [call("get_weather", '{"town": 1}')],
            "parameters",
        ),
        (
            request(structured=StructuredOutput(json_schema=json.dumps(SCHEMA))),
            [ChoiceDelta(0, '{"n": "x"}', finish_reason="stop")],
            "schema",
        ),
        (
            request(structured=StructuredOutput(json_object=True)),
            [ChoiceDelta(0, "[1]", finish_reason="stop")],
            "JSON object",
        ),
        (request(tools=ToolPlan((WEATHER,), choice="none")), [call("get_weather", "{}")], "no tool could"),
        (
            request(tools=ToolPlan((WEATHER,), choice="named", name="get_weather")),
            [ChoiceDelta(0, "<tool_call> I will", finish_reason="length")],
            "instead of the tool call",
        ),
    ],
)
def test_an_answer_the_request_ruled_out_is_a_502(
    req: GenerationRequest, deltas: list[ChoiceDelta], problem: str
) -> None:
    with pytest.raises(InvalidUpstreamAnswer, match=problem):
        check(req, *deltas)


def test_what_the_upstream_was_not_declared_to_do_is_refused_before_it_is_sent() -> None:
    with pytest.raises(InvalidRequest, match="structured_outputs"):
        refuse_undeclared(request(structured=StructuredOutput(json_object=True)), False, False)
    with pytest.raises(InvalidRequest, match="tool_choice_auto"):
        refuse_undeclared(request(tools=ToolPlan((WEATHER,), choice="auto")), True, False)
    refuse_undeclared(request(tools=ToolPlan((WEATHER,), choice="named", name="get_weather")), True, False)
