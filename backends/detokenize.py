"""Token ids to streamed text, with stop sequences, for backends that sample in the replica.

Text is decoded incrementally with the tokenizer's own ``DecodeStream`` primed with the prompt (as vLLM
does for fast tokenizers), so the streamed pieces join to exactly the text vLLM would return. A stop
sequence ends the choice and is cut from the text; only a tail that could still grow into a stop sequence
is held back, and it is released as soon as it cannot.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

LOGPROB_CONTEXT = 4
"""Sampled tokens before a partial character that ``logprob_token_text`` looks back over (as vLLM)."""


def logprob_token_text(decode: Callable[[list[int]], str], token_id: int, context: Sequence[int]) -> str:
    """A logprob entry's token text, as vLLM's logprobs give it, so that every backend answers alike: a
    token that alone decodes to part of a UTF-8 character is decoded after the sampled tokens before it
    (``context``, up to ``LOGPROB_CONTEXT``); the token that completes the character carries all of it,
    and one that leaves it incomplete is "" (the tokens' texts join to the answer's text)."""
    text = decode([token_id])
    if not text.endswith("\ufffd"):
        return text
    for n in range(1, min(len(context), LOGPROB_CONTEXT) + 1):
        tail = list(context[-n:])
        whole = decode([*tail, token_id])
        if whole.endswith("\ufffd"):
            continue
        complete = len(tail)  # the tail's own partial tokens gave "": their bytes count as this token's
        while complete > 0 and decode([tail[complete - 1]]).endswith("\ufffd"):
            complete -= 1
        before = decode(tail[:complete]) if complete else ""
        return whole[len(os.path.commonprefix([before, whole])) :]
    return ""


class _FullDecode:
    """Fallback for tokenizers without ``DecodeStream``: decode all ids, emit what is new."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._text = ""

    def step(self, token_id: int) -> str:
        self._ids.append(token_id)
        text = str(self._tokenizer.decode(self._ids, skip_special_tokens=True))
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for its next bytes
            return ""
        delta, self._text = text[len(self._text) :], text
        return delta


class _StreamDecode:
    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int]) -> None:
        from tokenizers.decoders import DecodeStream

        self._backend = tokenizer.backend_tokenizer
        self._stream = DecodeStream(ids=list(prompt_ids), skip_special_tokens=True)

    def step(self, token_id: int) -> str:
        return self._stream.step(self._backend, token_id) or ""


class TextStream:
    """One choice's text: ``push`` a token id, get the text that may be sent now."""

    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int], stop: Sequence[str] = ()) -> None:
        self._decoder: _StreamDecode | _FullDecode
        try:
            self._decoder = _StreamDecode(tokenizer, prompt_ids)
        except (ImportError, AttributeError, TypeError):
            self._decoder = _FullDecode(tokenizer)
        self._stop = [s for s in stop if s]
        self._pending = ""  # decoded but not sent: could be the start of a stop sequence
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Text to send after ``token_id``; sets ``stopped`` when a stop sequence completed."""
        if self.stopped:
            return ""
        self._pending += self._decoder.step(token_id)
        if not self._stop:
            out, self._pending = self._pending, ""
            return out
        hits = [i for i in (self._pending.find(s) for s in self._stop) if i >= 0]
        if hits:
            self.stopped = True
            out, self._pending = self._pending[: min(hits)], ""
            return out
        keep = self._held_back()
        out = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return out

    def flush(self) -> str:
        """What was held back, when the choice ends for another reason (length, end of sequence)."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out

    def _held_back(self) -> int:
        """Length of the longest tail of the pending text that is a proper prefix of a stop sequence."""
        text = self._pending
        for size in range(min(len(text), max(len(s) for s in self._stop) - 1), 0, -1):
            tail = text[-size:]
            if any(s.startswith(tail) for s in self._stop):
                return size
        return 0
