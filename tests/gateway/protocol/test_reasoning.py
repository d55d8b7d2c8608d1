from __future__ import annotations

import pytest

from gateway.protocol.reasoning import ThinkSplitter, split_reasoning


def stream(deltas: list[str]) -> tuple[str, str]:
    splitter = ThinkSplitter()
    reasoning, content = "", ""
    for delta in deltas:
        r, c = splitter.feed(delta)
        reasoning += r
        content += c
    r, c = splitter.finish()
    return reasoning + r, content + c


def test_whole_answer_with_both_tags_is_split() -> None:
    assert split_reasoning("<think>\nFrance's capital.\n</think>\n\nParis.") == (
        "\nFrance's capital.\n",
        "Paris.",
    )


def test_answer_that_starts_inside_think_is_split_at_the_closing_tag() -> None:
    assert split_reasoning("Let me recall.</think>Paris.") == ("Let me recall.", "Paris.")


def test_answer_without_tags_is_all_content() -> None:
    assert split_reasoning("Paris.") == ("", "Paris.")


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_tags_split_across_deltas_are_recognised(size: int) -> None:
    text = "<think>a < b is true</think>\nThe answer: x <y"
    deltas = [text[i : i + size] for i in range(0, len(text), size)]
    assert stream(deltas) == ("a < b is true", "The answer: x <y")


def test_streaming_never_holds_back_more_than_a_tag() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("<think>abc</th") == ("abc", "")
    assert splitter.feed("ink>xyz") == ("", "xyz")
