from __future__ import annotations

from backends.base import ChoiceDelta, GenerationChunk, Usage
from gateway.protocol.responses import ChatFormatter, CompletionFormatter


def test_reasoning_models_answer_with_reasoning_content() -> None:
    formatter = ChatFormatter("id", "r1", 1, reasoning=True)
    body = formatter.completion(
        GenerationChunk([ChoiceDelta(0, "Recall.</think>\n\nParis.", "stop")], Usage(3, 5))
    )
    message = body["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Paris.", "reasoning_content": "Recall."}


def test_reasoning_streams_as_reasoning_content_deltas_then_content() -> None:
    formatter = ChatFormatter("id", "r1", 1, reasoning=True)
    deltas = []
    for text, finish in [("<think>Rec", None), ("all.</thi", None), ("nk>\nPar", None), ("is.", "stop")]:
        event = formatter.delta_chunk([ChoiceDelta(0, text, finish)])  # type: ignore[arg-type]
        if event is not None:
            deltas.append(event["choices"][0]["delta"])
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    content = "".join(d.get("content", "") for d in deltas)
    assert (reasoning, content) == ("Recall.", "Paris.")


def test_plain_models_keep_think_tags_in_content() -> None:
    formatter = ChatFormatter("id", "m", 1)
    body = formatter.completion(GenerationChunk([ChoiceDelta(0, "<think>x</think>y", "stop")], Usage(1, 1)))
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "<think>x</think>y"}


def test_completion_logprob_offsets_follow_the_text() -> None:
    from backends.base import TokenLogprob

    formatter = CompletionFormatter("id", "m")
    first = formatter.delta_chunk(
        [ChoiceDelta(0, "ab", None, [TokenLogprob("a", -1), TokenLogprob("b", -2)])]
    )
    second = formatter.delta_chunk([ChoiceDelta(0, "c", "length", [TokenLogprob("c", -3)])])
    assert first is not None and second is not None
    assert first["choices"][0]["logprobs"]["text_offset"] == [0, 1]
    assert second["choices"][0]["logprobs"]["text_offset"] == [2]


def test_tool_calls_in_a_whole_answer_and_in_stream_chunks() -> None:
    from backends.tools import ToolCallDelta

    formatter = ChatFormatter("id", "m", 1)
    call = ToolCallDelta(0, "call_1", "get_weather", '{"city": "Paris"}')
    body = formatter.completion(
        GenerationChunk([ChoiceDelta(0, "", "tool_calls", tool_calls=[call])], Usage(1, 1))
    )
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    first = formatter.delta_chunk(
        [ChoiceDelta(0, tool_calls=[ToolCallDelta(0, "call_1", "get_weather", "")])]
    )
    more = formatter.delta_chunk(
        [ChoiceDelta(0, finish_reason="tool_calls", tool_calls=[ToolCallDelta(0, arguments="{}")])]
    )
    assert first is not None and more is not None
    assert first["choices"][0]["delta"] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ]
    }
    assert more["choices"][0]["delta"] == {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}
    assert more["choices"][0]["finish_reason"] == "tool_calls"
