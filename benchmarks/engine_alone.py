"""The engine with no server at all: vLLM's ``AsyncLLM`` in this process, the catalog's first model and its
engine settings, one greedy request after another. The floor every server in front of it is measured
against (``benchmarks/wakeups.py``).

Run as ``python -m benchmarks.engine_alone REQUESTS ROUNDS``; prints one JSON line per round:
``{"seconds": ..., "chunks": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

PROMPT = "Tell me a long story about a cat and a dog."
MAX_TOKENS = 48


async def _measure(requests: int, rounds: int) -> None:
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    from benchmarks.e2e_systems import engine_settings

    settings = engine_settings()
    # The engine as the gateway runs it: its worker in the engine-core process where the gateway does so,
    # spawned with the same OpenMP set-up (vLLM is imported already, so it binds only the engine core).
    os.environ.update({**settings.env, **settings.single_process_env})
    layout = {"distributed_executor_backend": "uni"} if settings.single_process else {}
    args = AsyncEngineArgs(
        model=str(settings.weights), disable_log_stats=True, **settings.engine_kwargs, **layout
    )
    engine: Any = AsyncLLM.from_engine_args(args)
    tokenizer = engine.get_tokenizer()
    messages = [{"role": "user", "content": PROMPT}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, output_kind=RequestOutputKind.DELTA)

    async def one(request_id: str) -> int:
        chunks = 0
        async for _ in engine.generate(prompt, params, request_id=request_id):
            chunks += 1
        return chunks

    try:
        for i in range(2):
            await one(f"warm-{i}")
        for r in range(rounds):
            started, chunks = time.perf_counter(), 0
            for i in range(requests):
                chunks += await one(f"{r}-{i}")
            print(json.dumps({"seconds": time.perf_counter() - started, "chunks": chunks}), flush=True)
    finally:
        engine.shutdown()


if __name__ == "__main__":  # vLLM spawns its engine processes, which import this module again
    asyncio.run(_measure(int(sys.argv[1]), int(sys.argv[2])))
