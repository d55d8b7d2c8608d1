"""Split DeepSeek-R1 style reasoning out of generated text: ``<think>…</think>`` → ``reasoning_content``.

Streaming-safe: a tag split across two deltas is held back only until it can be told from text (never
longer than the tag itself). R1 templates often open ``<think>`` in the prompt, so the output may start
with reasoning and only ever show the closing tag; both forms are handled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPEN = "<think>"
CLOSE = "</think>"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


@dataclass
class ThinkSplitter:
    """Feeds text deltas of one choice; returns (reasoning, content) deltas."""

    in_reasoning: bool = True  # until proven otherwise: R1 output may start inside <think>
    seen_any: bool = False
    _pending: str = field(default="", repr=False)
    _after_close: bool = field(default=False, repr=False)  # newlines right after </think> are dropped

    def feed(self, text: str) -> tuple[str, str]:
        buffer = self._pending + text
        self._pending = ""
        reasoning: list[str] = []
        content: list[str] = []
        while buffer:
            if not self.seen_any:
                stripped = buffer.lstrip()
                if len(stripped) < len(OPEN) and OPEN.startswith(stripped):
                    self._pending = buffer  # could still become "<think>"
                    break
                self.seen_any = True
                if stripped.startswith(OPEN):
                    buffer = stripped[len(OPEN) :]
                    continue
            if self.in_reasoning:
                end = buffer.find(CLOSE)
                if end >= 0:
                    reasoning.append(buffer[:end])
                    buffer = buffer[end + len(CLOSE) :]
                    self.in_reasoning = False
                    self._after_close = True
                    continue
                keep = _partial_suffix(buffer, CLOSE)
                reasoning.append(buffer[: len(buffer) - keep])
                self._pending = buffer[len(buffer) - keep :]
                break
            if self._after_close:
                buffer = buffer.lstrip("\n")
                self._after_close = not buffer
            content.append(buffer)
            break
        return "".join(reasoning), "".join(content)

    def finish(self) -> tuple[str, str]:
        """Flush held-back text at the end of the choice."""
        pending, self._pending = self._pending, ""
        if not pending:
            return "", ""
        return (pending, "") if self.in_reasoning else ("", pending)


def split_reasoning(text: str) -> tuple[str, str]:
    """Whole-answer form of ``ThinkSplitter``. Text with no closing tag has no reasoning."""
    if CLOSE not in text:
        return "", text
    splitter = ThinkSplitter()
    reasoning, content = splitter.feed(text)
    tail_reasoning, tail_content = splitter.finish()
    return reasoning + tail_reasoning, content + tail_content
