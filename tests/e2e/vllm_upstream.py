"""A real vLLM OpenAI server on loopback (``vllm serve`` of the SmolLM2 folder), the upstream that the
``openai_upstream`` backend calls: a rented API, as far as the gateway can tell.

One per test session, started by the first test that asks (``vllm_upstream`` in conftest). It wants an
API key, which reaches the gateway's backend only through the environment variable the catalog names.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import psutil
import pytest

SERVED = "up"  # the name the upstream serves the model under
KEY_ENV = "MAAS_E2E_UPSTREAM_KEY"
MAX_MODEL_LEN = 2048
UPSTREAM_START_TIMEOUT_S = 420


@dataclass
class Upstream:
    base_url: str
    key: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=self.key, max_retries=0)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def engine(self, read_timeout_s: float = 120) -> dict[str, object]:
        """The ``engine`` options of an ``openai_upstream`` deployment that calls this server."""
        return {
            "base_url": self.base_url,
            "model": SERVED,
            "api_key_env": KEY_ENV,
            "read_timeout_s": read_timeout_s,
            "retries": 1,
        }


def _process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@contextmanager
def running_upstream(weights: Path, folder: Path, port: int) -> Iterator[Upstream]:
    """Start the server, wait until it answers, and at the end prove that none of its processes is left."""
    key = secrets.token_hex(16)
    log = folder / "vllm.log"
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        f"--model={weights}",
        f"--served-model-name={SERVED}",
        "--dtype=float32",
        f"--max-model-len={MAX_MODEL_LEN}",
        "--enforce-eager",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--api-key={key}",
        "--disable-log-stats",
        # Named and required tool choices need a tool-call parser set on vLLM's server, as a provider's
        # would have; it reads calls in Qwen's <tool_call> format.
        "--enable-auto-tool-choice",
        "--tool-call-parser=hermes",
    ]
    env = {
        **os.environ,
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_USE_AOT_COMPILE": "0",
        "HF_HUB_OFFLINE": "1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Upstream(f"http://127.0.0.1:{port}/v1", key, process, log)
    tree: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + UPSTREAM_START_TIMEOUT_S
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"vLLM did not start (exit {process.poll()}):\n{server.log_tail()}")
            try:
                headers = {"Authorization": f"Bearer {key}"}
                if httpx.get(f"{server.base_url}/models", headers=headers, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        tree = _process_tree(process.pid)
        yield server
    finally:
        tree = [*tree, *_process_tree(process.pid)] if process.poll() is None else tree
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        time.sleep(1)
        leftovers = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        names = [f"{p.pid}:{p.name()}" for p in leftovers]
        for proc in leftovers:
            proc.kill()
        assert not leftovers, f"vLLM processes left behind: {names}"
