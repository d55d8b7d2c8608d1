"""Constrained decoding for the transformers backend, with xgrammar (the grammar library vLLM uses).

A request's constraint (``backends.tools.decoding_constraint``: a ``response_format`` schema or object,
or a forced tool choice's schema) is compiled once per schema against the model's tokenizer; each
sequence then has its own ``GrammarMatcher``, which masks the logits before every sampled token and
accepts the token after it. JSON is compact (no free whitespace), as the vLLM backend's ``compact_json``:
a small model left free to write whitespace can fill ``max_tokens`` with it. The stop tokens are the
engine's, so a sequence may end only where its JSON is complete.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from backends.errors import InvalidRequest
from backends.tools import StructuredOutput


class Grammars:
    """Compiles constraints for one model (thread-safe; xgrammar caches what it compiled)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]) -> None:
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids)
        )
        self._compiler = xgr.GrammarCompiler(info)
        self._lock = threading.Lock()

    def compile(self, constraint: StructuredOutput) -> Any:
        """The compiled grammar of ``constraint``; a schema xgrammar cannot enforce is a 400 naming it."""
        try:
            with self._lock:
                if constraint.json_schema is not None:
                    return self._compiler.compile_json_schema(constraint.json_schema, any_whitespace=False)
                return self._compiler.compile_builtin_json_grammar()
        except (RuntimeError, ValueError) as exc:
            raise InvalidRequest(
                f"The requested output constraint cannot be enforced: {str(exc)[:300]}",
                param="response_format",
            ) from None


class SequenceGrammar:
    """One sequence's matcher: ``mask`` the logits before sampling, ``accept`` the token sampled."""

    def __init__(self, compiled: Any) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self._matcher = xgr.GrammarMatcher(compiled)
        self._bitmask = xgr.allocate_token_bitmask(1, compiled.tokenizer_info.vocab_size)

    def mask(self, logits: Any) -> None:
        """Sets every token the grammar rules out next to -inf in ``logits`` (one row, in place)."""
        if self._matcher.is_terminated():
            return
        self._matcher.fill_next_token_bitmask(self._bitmask)
        row = logits.unsqueeze(0)
        self._xgr.apply_token_bitmask_inplace(row, self._bitmask.to(row.device))

    def accept(self, token_id: int) -> None:
        if not self._matcher.is_terminated() and not self._matcher.accept_token(token_id):
            raise RuntimeError(f"token {token_id} was sampled outside the grammar")
