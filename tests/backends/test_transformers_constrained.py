"""The transformers backend enforces response formats and forced tool calls with xgrammar, for real: tiny
checkpoints of several families on the CPU, random weights, so only the grammar makes the answers fit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from backends.base import ChatMessage, ChatPrompt, GenerationRequest, SamplingOptions
from backends.errors import InvalidRequest
from backends.tools import StructuredOutput, ToolFunction, ToolPlan
from tests.backends.test_transformers_backend import PROMPTS, collect, greedy, reference_ids, started

SCHEMA = {
    "type": "object",
    "properties": {"city": {"enum": ["Paris", "Oslo", "Lima"]}, "days": {"enum": [1, 2, 3]}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
TRIP = ToolFunction("plan_trip", "Plan a trip", json.dumps(SCHEMA))
NOTE = ToolFunction("take_note")  # no parameters: its arguments are exactly {}


def chat(i: int, **fields: object) -> GenerationRequest:
    prompt = ChatPrompt((ChatMessage("user", "Plan a trip as JSON."),))
    sampling = SamplingOptions(max_tokens=120, temperature=0)  # a random model may pick short tokens
    return GenerationRequest(f"c-{i}", prompt, sampling, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("architecture", "template"), [("llama", "llama3"), ("qwen2", "qwen2_5"), ("bloom", "bloom")]
)
async def test_json_schema_answers_fit_and_forced_calls_come_back_as_calls(
    tiny_checkpoint: Callable[[str, str], Path], architecture: str, template: str
) -> None:
    backend = await started(tiny_checkpoint(architecture, template), max_batch_size=4)
    try:
        structured = await collect(
            backend, chat(0, structured=StructuredOutput(json_schema=json.dumps(SCHEMA)))
        )
        named = await collect(
            backend, chat(1, tools=ToolPlan((TRIP, NOTE), choice="named", name="plan_trip"))
        )
        required = await collect(
            backend, chat(2, tools=ToolPlan((TRIP, NOTE), choice="required", parallel=False))
        )
        obj = await collect(backend, chat(3, structured=StructuredOutput(json_object=True)))
    finally:
        backend.stop()
    choice = structured.choices[0]
    assert choice.finish_reason == "stop", choice
    jsonschema.validate(json.loads(choice.text), SCHEMA)
    (call,) = named.choices[0].tool_calls or []
    assert call.name == "plan_trip" and named.choices[0].finish_reason == "tool_calls"
    jsonschema.validate(json.loads(call.arguments), SCHEMA)
    assert required.choices[0].finish_reason == "tool_calls"
    (call,) = required.choices[0].tool_calls or []  # parallel_tool_calls false: exactly one
    assert call.name in ("plan_trip", "take_note")
    arguments = json.loads(call.arguments)
    assert arguments == {} if call.name == "take_note" else jsonschema.validate(arguments, SCHEMA) is None
    if obj.choices[0].finish_reason == "stop":  # any object: a random model may fill max_tokens inside it
        assert isinstance(json.loads(obj.choices[0].text), dict)


async def test_a_constrained_request_in_the_batch_leaves_the_others_tokens_unchanged(
    tiny_checkpoint: Callable[[str, str], Path],
) -> None:
    folder = tiny_checkpoint("llama", "llama3")
    backend = await started(folder, max_batch_size=4)
    try:
        plain, constrained = await asyncio.gather(
            collect(backend, greedy(0, PROMPTS[1])),
            collect(backend, chat(1, structured=StructuredOutput(json_schema=json.dumps(SCHEMA)))),
        )
    finally:
        backend.stop()
    from transformers import AutoTokenizer

    from backends.detokenize import logprob_token_text

    decode = AutoTokenizer.from_pretrained(folder).decode
    ids = reference_ids(folder, PROMPTS[1])
    assert plain.choices[0].logprobs is not None
    assert [t.token for t in plain.choices[0].logprobs] == [
        logprob_token_text(decode, t, ids[:k]) for k, t in enumerate(ids)
    ]
    jsonschema.validate(json.loads(constrained.choices[0].text), SCHEMA)


async def test_auto_and_a_schema_the_grammar_cannot_take_are_400s(
    tiny_checkpoint: Callable[[str, str], Path],
) -> None:
    backend = await started(tiny_checkpoint("llama", "llama3"), max_batch_size=2)
    try:
        with pytest.raises(InvalidRequest, match="auto"):
            await collect(backend, chat(0, tools=ToolPlan((TRIP,), choice="auto")))
        with pytest.raises(InvalidRequest, match="cannot be enforced"):
            await collect(backend, chat(1, structured=StructuredOutput(json_schema='{"type": "nonsense"}')))
        answer = await collect(backend, chat(2))  # and the engine still serves
    finally:
        backend.stop()
    assert answer.usage is not None and answer.usage.completion_tokens > 0
