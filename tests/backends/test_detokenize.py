"""Streamed text with stop sequences: pieces join to the whole decode; stops are cut; tails held minimally."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from backends.detokenize import TextStream, logprob_token_text


def stream(folder: Path, text: str, stop: tuple[str, ...]) -> tuple[list[str], TextStream]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    text_stream = TextStream(tokenizer, tokenizer.encode("Prompt:"), stop)
    pieces = [text_stream.push(token) for token in tokenizer.encode(text)]
    return [*pieces, text_stream.flush()], text_stream


def test_pieces_join_to_the_whole_text_without_stops(tiny_checkpoint: Callable[[str, str], Path]) -> None:
    text = " The café costs 3 €, naïve résumé."
    pieces, _ = stream(tiny_checkpoint("llama", "llama3"), text, ())
    assert "".join(pieces) == text


def test_a_stop_sequence_split_over_tokens_is_cut_and_ends_the_stream(
    tiny_checkpoint: Callable[[str, str], Path],
) -> None:
    pieces, text_stream = stream(tiny_checkpoint("llama", "llama3"), " alpha beta END gamma", ("END",))
    assert "".join(pieces) == " alpha beta "
    assert text_stream.stopped


def test_text_that_only_looks_like_a_stop_start_is_released(
    tiny_checkpoint: Callable[[str, str], Path],
) -> None:
    pieces, text_stream = stream(tiny_checkpoint("llama", "llama3"), " one EN two", ("END",))
    assert "".join(pieces) == " one EN two"
    assert not text_stream.stopped
    assert pieces[-1] == ""  # nothing was still held back at the end


BYTES = {1: b"a", 2: b"\xe2", 3: b"\x82", 4: b"\xac", 5: b"b"}  # 2, 3, 4: the three bytes of the euro sign


def byte_decode(ids: list[int]) -> str:
    return b"".join(BYTES[i] for i in ids).decode("utf-8", errors="replace")


def test_logprob_texts_give_a_split_character_to_the_token_that_completes_it() -> None:
    sampled = [1, 2, 3, 4, 5]
    texts = [logprob_token_text(byte_decode, token, sampled[:i]) for i, token in enumerate(sampled)]
    assert texts == ["a", "", "", "€", "b"]  # as vLLM's logprobs: the texts join to the answer
    assert "".join(texts) == byte_decode(sampled)
    assert logprob_token_text(byte_decode, 4, []) == ""  # nothing before it to complete
