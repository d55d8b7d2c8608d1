"""Choosing the next token of one sequence from its logits: penalties, temperature, top-p, seed, logprobs.

The semantics follow vLLM's (and so OpenAI's): presence and frequency penalties apply to the tokens
generated so far; temperature 0 is greedy; logprobs are those of the model's raw distribution, before
penalties and temperature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from backends.base import SamplingOptions


@dataclass(frozen=True)
class SampledToken:
    token_id: int
    logprob: float | None = None
    top: tuple[tuple[int, float], ...] = ()
    """The ``k`` most likely (token id, logprob) pairs when logprobs were asked for."""


class TokenSampler:
    """Per-sequence sampling state (its random generator and the counts of what it generated)."""

    def __init__(self, options: SamplingOptions, vocab_size: int, device: Any, seed_offset: int = 0) -> None:
        self.options = options
        self.greedy = options.temperature == 0
        self._generator: torch.Generator | None = None
        if not self.greedy:
            self._generator = torch.Generator(device=device)
            if options.seed is not None:
                self._generator.manual_seed(options.seed + seed_offset)
            else:
                self._generator.seed()
        penalised = options.presence_penalty != 0 or options.frequency_penalty != 0
        self._counts = torch.zeros(vocab_size, device=device) if penalised else None

    def sample(self, logits: torch.Tensor) -> SampledToken:
        """Pick the next token from one row of logits (shape ``[vocab]``, float32)."""
        options = self.options
        scores = logits
        if self._counts is not None:
            scores = scores - options.frequency_penalty * self._counts
            scores = scores - options.presence_penalty * (self._counts > 0).to(scores.dtype)
        if self.greedy:
            token = int(torch.argmax(scores))
        else:
            temperature = 1.0 if options.temperature is None else options.temperature
            probs = torch.softmax(scores / temperature, dim=-1)
            top_p = 1.0 if options.top_p is None else options.top_p
            if top_p < 1.0:
                sorted_probs, order = torch.sort(probs, descending=True)
                # Keep the smallest prefix whose mass reaches top_p (always at least one token).
                cut = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= top_p
                sorted_probs[cut] = 0
                probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
            token = int(torch.multinomial(probs, 1, generator=self._generator))
        if self._counts is not None:
            self._counts[token] += 1
        if options.logprobs is None:
            return SampledToken(token)
        raw = torch.log_softmax(logits, dim=-1)
        top: tuple[tuple[int, float], ...] = ()
        if options.logprobs > 0:
            values, ids = torch.topk(raw, options.logprobs)
            top = tuple((int(i), float(v)) for i, v in zip(ids, values, strict=True))
        return SampledToken(token, float(raw[token]), top)
