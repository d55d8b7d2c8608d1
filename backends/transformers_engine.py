"""Continuous batching over a transformers model, on any torch device, in one engine thread.

Requests join the running batch between decode steps: a newcomer's prompt is prefilled (with the other
newcomers of that step, left-padded), its KV cache is left-padded to the batch's length and concatenated
along the batch dimension, and from the next step on it decodes with everyone else. Finished or abandoned
sequences leave the batch at once, and cache columns that no remaining sequence needs are trimmed. A cache
whose layers cannot be joined this way (sliding-window or other special layers) runs as its own group,
still batched within itself.

Every step hands each request the tokens, text and finish reasons of its sequences through its
``on_step`` callback (called in the engine thread; the backend forwards it to its event loop).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from backends.base import FinishReason, SamplingOptions, TokenLogprob, TopLogprob
from backends.detokenize import LOGPROB_CONTEXT, TextStream, logprob_token_text
from backends.token_sampling import SampledToken, TokenSampler
from backends.transformers_grammar import SequenceGrammar

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeqOutput:
    """What one step produced for one choice of a request."""

    choice: int
    text: str
    finish_reason: FinishReason | None
    logprob: TokenLogprob | None = None


@dataclass
class EngineRequest:
    request_id: str
    prompt_ids: list[int]
    sampling: SamplingOptions
    max_tokens: int
    on_step: Callable[[list[SeqOutput] | BaseException], None]
    """Receives each step's outputs, or the error that ended the request (called in the engine thread)."""
    cancelled: threading.Event = field(default_factory=threading.Event)
    grammar: Any = None
    """An xgrammar compiled grammar each choice's tokens must follow (``backends.transformers_grammar``)."""


@dataclass
class _Row:
    request: EngineRequest
    choice: int
    sampler: TokenSampler
    text: TextStream
    length: int  # tokens of this sequence already in the KV cache
    next_token: int = -1  # sampled, not yet fed to the model
    generated: int = 0
    finished: bool = False
    recent: list[int] = field(default_factory=list)  # the last sampled tokens (logprob texts' context)
    grammar: SequenceGrammar | None = None


@dataclass
class _Group:
    """Sequences that share one KV cache: ``mask`` is ``[rows, cache length]``, left-padded."""

    rows: list[_Row]
    cache: Any
    mask: torch.Tensor


class TransformersEngine:
    """Owns the model and the engine thread; ``submit`` is safe from any thread."""

    def __init__(
        self, model: Any, tokenizer: Any, device: Any, *, max_batch_size: int, eos_token_ids: Sequence[int]
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_batch_size = max_batch_size
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self._eos = frozenset(eos_token_ids)
        self.eos_token_ids = self._eos
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        params = inspect.signature(model.forward).parameters
        self._takes_positions = "position_ids" in params
        self._takes_cache_position = "cache_position" in params
        self._pending: list[EngineRequest] = []
        self._groups: list[_Group] = []
        self._wake = threading.Condition()
        self._stopping = False
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="maas-transformers-engine", daemon=True)
        self._thread.start()

    # -- public ----------------------------------------------------------------------------------

    def submit(self, request: EngineRequest) -> None:
        with self._wake:
            if self.failure is not None:
                raise RuntimeError("the engine has failed") from self.failure
            self._pending.append(request)
            self._wake.notify()

    def wake(self) -> None:
        """Let the engine notice a cancellation while it is idle-waiting."""
        with self._wake:
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=30)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.failure is None

    # -- engine thread ---------------------------------------------------------------------------

    def _rows(self) -> int:
        return sum(len(g.rows) for g in self._groups)

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._stopping and not self._pending and not self._groups:
                        self._wake.wait()
                    if self._stopping:
                        break
                    admitted = self._admit()
                try:
                    self._drop_cancelled()
                    if admitted:
                        self._prefill(admitted)
                    if self._groups:
                        self._decode()
                except Exception as exc:  # the engine cannot go on; every request hears why
                    logger.exception("transformers engine failed")
                    self.failure = exc
                    for request in {id(r.request): r.request for g in self._groups for r in g.rows}.values():
                        request.on_step(exc)
                    for request in [*admitted, *self._pending]:
                        request.on_step(exc)
                    self._groups, self._pending = [], []
                    return

    def _admit(self) -> list[EngineRequest]:
        """Pending requests whose sequences fit in the batch now (first come, first served)."""
        room = self.max_batch_size - self._rows()
        admitted = []
        while self._pending and self._pending[0].sampling.n <= room:
            request = self._pending.pop(0)
            if request.cancelled.is_set():
                continue
            admitted.append(request)
            room -= request.sampling.n
        return admitted

    def _drop_cancelled(self) -> None:
        for group in self._groups:
            for row in group.rows:
                if row.request.cancelled.is_set():
                    row.finished = True
        self._remove_finished()

    def _forward(self, ids: torch.Tensor, group: _Group, positions: torch.Tensor, start: int) -> torch.Tensor:
        kwargs: dict[str, Any] = {"attention_mask": group.mask, "past_key_values": group.cache}
        kwargs["use_cache"] = True
        if self._takes_positions:
            kwargs["position_ids"] = positions
        if self._takes_cache_position:
            kwargs["cache_position"] = torch.arange(start, start + ids.shape[1], device=self.device)
        out = self.model(input_ids=ids, **kwargs)
        logits: torch.Tensor = out.logits[:, -1, :].float()
        return logits

    def _prefill(self, requests: list[EngineRequest]) -> None:
        from transformers import DynamicCache

        rows = []
        for request in requests:
            for choice in range(request.sampling.n):
                sampler = TokenSampler(request.sampling, self.vocab_size, self.device, seed_offset=choice)
                text = TextStream(self.tokenizer, request.prompt_ids, request.sampling.stop)
                grammar = None if request.grammar is None else SequenceGrammar(request.grammar)
                rows.append(_Row(request, choice, sampler, text, len(request.prompt_ids), grammar=grammar))
        width = max(row.length for row in rows)
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - row.length :] = torch.tensor(row.request.prompt_ids)
            mask[i, width - row.length :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        group = _Group(rows, DynamicCache(config=self.model.config), mask)
        logits = self._forward(ids, group, positions, 0)
        self._emit(rows, logits)
        if not self._join(group):
            self._groups.append(group)
        self._remove_finished()

    def _decode(self) -> None:
        for group in self._groups:
            ids = torch.tensor([[row.next_token] for row in group.rows], device=self.device)
            positions = torch.tensor([[row.length] for row in group.rows], device=self.device)
            start = group.mask.shape[1]
            group.mask = F.pad(group.mask, (0, 1), value=1)
            logits = self._forward(ids, group, positions, start)
            for row in group.rows:
                row.length += 1
            self._emit(group.rows, logits)
        self._remove_finished()

    def _emit(self, rows: list[_Row], logits: torch.Tensor) -> None:
        """Sample each row's next token, decide whether it finished, and hand the outputs to requests."""
        by_request: dict[int, tuple[EngineRequest, list[SeqOutput]]] = {}
        for i, row in enumerate(rows):
            if row.grammar is not None:
                row.grammar.mask(logits[i])
            sampled = row.sampler.sample(logits[i])
            if row.grammar is not None:
                row.grammar.accept(sampled.token_id)
            row.next_token = sampled.token_id
            row.generated += 1
            text = row.text.push(sampled.token_id)
            reason: FinishReason | None = None
            ended = sampled.token_id in self._eos and not row.request.sampling.ignore_eos
            if row.text.stopped or ended:
                reason = "stop"
            elif row.generated >= row.request.max_tokens:
                reason = "length"
            if reason is not None:
                text += row.text.flush()
                row.finished = True
            output = SeqOutput(row.choice, text, reason, self._logprob(sampled, row.recent))
            row.recent = [*row.recent[1 - LOGPROB_CONTEXT :], sampled.token_id]
            by_request.setdefault(id(row.request), (row.request, []))[1].append(output)
        for request, outputs in by_request.values():
            request.on_step(outputs)

    def _logprob(self, sampled: SampledToken, context: Sequence[int]) -> TokenLogprob | None:
        if sampled.logprob is None:
            return None

        def text(token_id: int) -> str:
            return logprob_token_text(self.tokenizer.decode, token_id, context)

        top = tuple(TopLogprob(text(token), logprob) for token, logprob in sampled.top)
        return TokenLogprob(text(sampled.token_id), sampled.logprob, top)

    # -- cache bookkeeping -----------------------------------------------------------------------

    @staticmethod
    def _joinable(cache: Any) -> bool:
        from transformers.cache_utils import DynamicLayer

        layers: list[Any] = list(getattr(cache, "layers", None) or [])
        return bool(layers) and all(
            type(layer) is DynamicLayer and layer.keys is not None and layer.keys.dim() == 4
            for layer in layers
        )

    def _join(self, newcomer: _Group) -> bool:
        """Concatenate ``newcomer`` into the first group along the batch dimension, if both allow it."""
        if not self._groups or not (self._joinable(newcomer.cache) and self._joinable(self._groups[0].cache)):
            return False
        group = self._groups[0]
        width = max(group.mask.shape[1], newcomer.mask.shape[1])

        def left_pad(t: torch.Tensor, dim_from_end: int) -> torch.Tensor:
            missing = width - t.shape[-dim_from_end]
            if missing == 0:
                return t
            pad = [0, 0] * (dim_from_end - 1) + [missing, 0]
            return F.pad(t, pad)

        for mine, theirs in zip(group.cache.layers, newcomer.cache.layers, strict=True):
            mine.keys = torch.cat([left_pad(mine.keys, 2), left_pad(theirs.keys, 2)])
            mine.values = torch.cat([left_pad(mine.values, 2), left_pad(theirs.values, 2)])
        group.mask = torch.cat([left_pad(group.mask, 1), left_pad(newcomer.mask, 1)])
        group.rows.extend(newcomer.rows)
        return True

    def _remove_finished(self) -> None:
        kept_groups = []
        for group in self._groups:
            keep = [i for i, row in enumerate(group.rows) if not row.finished]
            if not keep:
                continue
            if len(keep) < len(group.rows):
                index = torch.tensor(keep, device=self.device)
                group.cache.batch_select_indices(index)
                group.mask = group.mask[index]
                group.rows = [group.rows[i] for i in keep]
                self._trim(group)
            kept_groups.append(group)
        self._groups = kept_groups

    def _trim(self, group: _Group) -> None:
        """Drop leading cache columns that are padding for every remaining row."""
        if not self._joinable(group.cache):
            return
        used = (group.mask.sum(dim=0) > 0).nonzero()
        first = int(used[0]) if len(used) else 0
        if first == 0:
            return
        for layer in group.cache.layers:
            layer.keys = layer.keys[:, :, first:, :]
            layer.values = layer.values[:, :, first:, :]
        group.mask = group.mask[:, first:]
