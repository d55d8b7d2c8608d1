"""Usage estimated with the model's own tokenizer, for an upstream that reports none.

``TokenCounter`` counts a prompt as the gateway renders it and a completion's text; ``CompletionText``
keeps one choice's text and counts it incrementally, re-encoding only the tail that may still merge with
text that follows.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.base import Prompt, TextPrompt, TokenPrompt
from backends.prompting import template_inputs

logger = logging.getLogger(__name__)


class TokenCounter:
    """Counts tokens with the model's own tokenizer, as the upstream engine would.

    Chat prompts are rendered with the model's chat template the way the gateway renders them for admission
    (``backends.token_count``) and counted without added special tokens; text prompts are counted with
    them. Without a ``tokenizer.json`` (a model id, or a folder without one) it counts UTF-8 bytes, an
    upper bound for byte-level vocabularies.
    """

    def __init__(
        self,
        tokenizer: Any | None = None,
        render_chat: Callable[[list[dict[str, Any]], list[dict[str, Any]] | None], str] | None = None,
        fallback: Callable[[Prompt], int] | None = None,
    ) -> None:
        self._tokenizer = tokenizer
        self._render_chat = render_chat
        self._fallback = fallback

    @classmethod
    def load(cls, weights_path: str) -> TokenCounter:
        from backends.token_count import load_prompt_counter

        prompts = load_prompt_counter(weights_path)
        file = Path(weights_path) / "tokenizer.json"
        if not file.is_file():
            logger.warning(
                "no tokenizer.json in %s: usage an upstream does not report is estimated in bytes",
                weights_path,
            )
            return cls(fallback=prompts.prompt_tokens)
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(file)), prompts.render_chat, prompts.prompt_tokens)

    def count(self, text: str, special_tokens: bool = False) -> int:
        if self._tokenizer is None:
            return len(text.encode("utf-8"))
        return len(self._tokenizer.encode(text, add_special_tokens=special_tokens).ids)

    def prompt_tokens(self, prompt: Prompt) -> int:
        if isinstance(prompt, TokenPrompt):
            return len(prompt.token_ids)
        if self._tokenizer is not None:
            if isinstance(prompt, TextPrompt):
                return self.count(prompt.text, special_tokens=True)
            if self._render_chat is not None:
                messages, tools = template_inputs(prompt)
                with contextlib.suppress(Exception):  # a template this renderer cannot run: the bound below
                    return self.count(self._render_chat(messages, tools))
        if self._fallback is not None:
            return self._fallback(prompt)
        text = prompt.text if isinstance(prompt, TextPrompt) else "".join(m.content for m in prompt.messages)
        return self.count(text)

    def settle(self, text: str, keep: int) -> tuple[int, int, int]:
        """Tokens in ``text``, and how much of it (characters, tokens) no later text can re-tokenize:
        everything but the last ``keep`` tokens."""
        if self._tokenizer is None:
            size = self.count(text)
            return size, len(text), size
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        total = len(encoding.ids)
        if total <= 2 * keep:
            return total, 0, 0
        chars = int(encoding.offsets[total - keep][0])
        return (total, chars, total - keep) if chars > 0 else (total, 0, 0)


@dataclass
class CompletionText:
    """One choice's text so far, counted incrementally: a settled prefix plus a re-encoded tail."""

    parts: list[str] = field(default_factory=list)
    settled_chars: int = 0
    settled_tokens: int = 0

    KEEP = 8  # tokens at the end that may still merge with text that follows

    def text(self) -> str:
        return "".join(self.parts)

    def estimate(self, counter: TokenCounter) -> int:
        text = self.text()
        total, chars, tokens = counter.settle(text[self.settled_chars :], self.KEEP)
        result = self.settled_tokens + total
        self.settled_chars += chars
        self.settled_tokens += tokens
        return result
