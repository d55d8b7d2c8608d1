"""Start-up time, output tokens/s and memory of ``maas serve`` on the default catalog.

    python -m benchmarks.serve_smoke [--fresh] [--max-tokens 128]

Starts ``maas serve`` with a new MAAS_HOME (``--fresh`` also converts the model again), measures the time
from the command to the first answer, the output tokens/s of one request and of 8 concurrent requests, and
the memory (PSS) of every process the gateway started; then stops it with SIGTERM. Prints JSON.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.maas_server import MODELS_DIR, create_key, maas_env
from benchmarks.machine import cpu_model
from benchmarks.procs import REPO, VENV_PYTHON, ServerFailed, free_port, start_server

PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]


def _tree_pss_mib(pid: int) -> dict[str, float]:
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    sessions = {os.getsid(p.pid) for p in procs}
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) in sessions and proc not in procs:
                procs.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    by_name: dict[str, float] = {}
    for proc in procs:
        try:
            name = proc.name()
            by_name[name] = by_name.get(name, 0.0) + proc.memory_full_info().pss / 2**20
        except psutil.Error:
            continue
    by_name["total"] = sum(by_name.values())
    return {k: round(v, 1) for k, v in sorted(by_name.items())}


def _chat(base: str, key: str, max_tokens: int) -> tuple[int, float]:
    started = time.perf_counter()
    response = httpx.post(
        f"{base}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "smollm2", "messages": PROMPT, "temperature": 0, "max_tokens": max_tokens},
        timeout=600,
    )
    response.raise_for_status()
    return int(response.json()["usage"]["completion_tokens"]), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fresh", action="store_true", help="convert the model again (cold cache)")
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="maas-bench-"))
    env = maas_env(home, None if args.fresh else MODELS_DIR)
    key = create_key(env)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    command = [str(VENV_PYTHON), "-m", "gateway.cli", "serve", "--port", str(port)]
    server = start_server("maas", command, port=port, log_dir=home, env=env, cwd=REPO)
    result: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.serve_smoke", *sys.argv[1:]]),
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model()},
    }

    def answers(_: httpx.Client) -> bool:
        _chat(base, key, 8)
        return True

    try:
        try:
            server.wait_ready(answers, timeout_s=900)
        except ServerFailed as exc:
            raise SystemExit(str(exc)) from None
        result["seconds_to_first_answer"] = round(time.perf_counter() - started, 1)
        tokens, seconds = _chat(base, key, args.max_tokens)
        result["one_request"] = {"completion_tokens": tokens, "output_tok_s": round(tokens / seconds, 1)}
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            counts = [c for c, _ in pool.map(lambda _: _chat(base, key, args.max_tokens), range(8))]
        wall = time.perf_counter() - t0
        result["eight_concurrent"] = {
            "completion_tokens": sum(counts),
            "output_tok_s": round(sum(counts) / wall, 1),
        }
        result["memory_pss_mib"] = _tree_pss_mib(server.pid)
    finally:
        server.stop(grace_s=120)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
