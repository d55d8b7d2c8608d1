"""The transformers backend on the CPU, for real: tiny checkpoints of every family, concurrent requests.

References are transformers' own ``generate`` on the same folder, one prompt at a time, so a test fails if
batching, cache joining, padding or trimming changes a single token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from backends.base import (
    ChatMessage,
    ChatPrompt,
    GenerationChunk,
    GenerationRequest,
    ModelSpec,
    SamplingOptions,
    TextPrompt,
    merge_chunks,
)
from backends.detokenize import logprob_token_text
from backends.errors import ContextLengthExceeded, InvalidRequest
from backends.transformers_backend import TransformersBackend

PROMPTS = [
    "Hello there",
    "The capital of France is a city that",
    "One",
    "A long story begins with a dragon who lived in the mountains and",
    "Numbers: 1, 2, 3,",
]
FAMILIES = [
    ("llama", "llama3"),
    ("qwen2", "qwen2_5"),
    ("qwen3", "qwen3"),
    ("deepseek_v3", "deepseek_r1"),
    ("glm4", "glm4"),
    ("bloom", "bloom"),
]
TOKENS = 12


def reference_ids(folder: Path, prompt: str, max_new_tokens: int = TOKENS) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = tokenizer.encode(prompt)
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]), max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False
        )
    return list(out[0][len(ids) :].tolist())


async def started(folder: Path, **engine: object) -> TransformersBackend:
    spec = ModelSpec(name="tiny", weights_path=str(folder), context_length=256, chip="cpu", engine=engine)
    backend = TransformersBackend.from_spec(spec)
    await backend.start()
    return backend


async def collect(backend: TransformersBackend, request: GenerationRequest) -> GenerationChunk:
    return merge_chunks([chunk async for chunk in backend.generate(request)])


def greedy(i: int, prompt: str, **options: object) -> GenerationRequest:
    sampling = SamplingOptions(
        **{"max_tokens": TOKENS, "temperature": 0, "ignore_eos": True, "logprobs": 0, **options}  # type: ignore[arg-type]
    )
    return GenerationRequest(f"req-{i}", TextPrompt(prompt), sampling)


@pytest.mark.parametrize(("architecture", "template"), FAMILIES)
async def test_concurrent_requests_joining_a_running_batch_decode_exactly_as_alone(
    tiny_checkpoint: Callable[[str, str], Path], architecture: str, template: str
) -> None:
    from transformers import AutoTokenizer

    folder = tiny_checkpoint(architecture, template)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    backend = await started(folder, max_batch_size=3)  # the last two wait for room, then join mid-batch
    try:

        async def arrive(i: int) -> GenerationChunk:
            await asyncio.sleep(0.03 * i)
            return await collect(backend, greedy(i, PROMPTS[i]))

        answers = await asyncio.gather(*(arrive(i) for i in range(len(PROMPTS))))
    finally:
        backend.stop()
    for prompt, answer in zip(PROMPTS, answers, strict=True):
        ids = reference_ids(folder, prompt)
        choice = answer.choices[0]
        assert choice.logprobs is not None
        # a token that is part of a character gives "" and the one completing it all of it (as vLLM)
        expected = [logprob_token_text(tokenizer.decode, t, ids[:k]) for k, t in enumerate(ids)]
        assert [t.token for t in choice.logprobs] == expected
        assert answer.usage is not None
        assert answer.usage.prompt_tokens == len(tokenizer.encode(prompt))
        assert answer.usage.completion_tokens == TOKENS
        assert choice.finish_reason == "length"


async def test_stop_sequence_ends_the_choice_and_is_cut_from_the_text(
    tiny_checkpoint: Callable[[str, str], Path],
) -> None:
    from transformers import AutoTokenizer

    folder = tiny_checkpoint("llama", "llama3")
    full = AutoTokenizer.from_pretrained(folder).decode(reference_ids(folder, PROMPTS[1]))
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    backend = await started(folder)
    try:
        answer = await collect(backend, greedy(0, PROMPTS[1], stop=(stop,), logprobs=None))
    finally:
        backend.stop()
    choice = answer.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.text == full[: full.index(stop)]
    assert answer.usage is not None and 0 < answer.usage.completion_tokens < TOKENS


async def test_chat_prompt_uses_the_folders_template_and_usage_is_exact(
    tiny_checkpoint: Callable[[str, str], Path],
) -> None:
    from transformers import AutoTokenizer

    folder = tiny_checkpoint("qwen2", "qwen2_5")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    expected = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))
    backend = await started(folder)
    try:
        prompt = ChatPrompt((ChatMessage("user", messages[0]["content"]),))
        request = GenerationRequest("chat", prompt, SamplingOptions(max_tokens=5, temperature=0))
        answer = await collect(backend, request)
    finally:
        backend.stop()
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == len(expected)
    assert 1 <= answer.usage.completion_tokens <= 5


async def test_seeded_sampling_repeats_and_n_choices_are_independent(
    tiny_checkpoint: Callable[[str, str], Path],
) -> None:
    backend = await started(tiny_checkpoint("llama", "llama3"))
    try:
        options = SamplingOptions(max_tokens=10, temperature=1.0, top_p=0.9, seed=7, n=2, ignore_eos=True)
        request = GenerationRequest("s", TextPrompt(PROMPTS[0]), options)
        first, second = await collect(backend, request), await collect(backend, request)
    finally:
        backend.stop()
    assert [c.text for c in first.choices] == [c.text for c in second.choices]
    assert first.choices[0].text != first.choices[1].text
    assert first.usage is not None and first.usage.completion_tokens == 20


async def test_a_client_that_leaves_frees_its_place_in_the_batch(
    tiny_checkpoint: Callable[[str, str], Path],
) -> None:
    backend = await started(tiny_checkpoint("llama", "llama3"), max_batch_size=1)
    try:
        long = backend.generate(greedy(0, PROMPTS[0], max_tokens=200))
        await anext(long)
        await long.aclose()  # the consumer is gone after one chunk
        answer = await asyncio.wait_for(collect(backend, greedy(1, PROMPTS[2])), timeout=30)
    finally:
        backend.stop()
    assert answer.choices[0].finish_reason == "length"


async def test_bad_requests_fail_before_the_first_chunk_with_client_errors(
    tiny_checkpoint: Callable[[str, str], Path],
) -> None:
    backend = await started(tiny_checkpoint("llama", "llama3"), max_batch_size=2, max_logprobs=3)
    try:
        with pytest.raises(ContextLengthExceeded):
            await collect(backend, greedy(0, "word " * 300))
        with pytest.raises(ContextLengthExceeded):
            await collect(backend, greedy(1, PROMPTS[0], max_tokens=1000))
        with pytest.raises(InvalidRequest, match="n=3"):
            await collect(backend, greedy(2, PROMPTS[0], n=3))
        with pytest.raises(InvalidRequest, match="logprobs"):
            await collect(backend, greedy(3, PROMPTS[0], logprobs=5))
        answer = await collect(backend, greedy(4, PROMPTS[0]))  # and the engine still serves
    finally:
        backend.stop()
    assert answer.usage is not None and answer.usage.completion_tokens == TOKENS
