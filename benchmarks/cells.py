"""One measured cell: a load generator process against one system at one concurrency."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.cpu import cpu_delta, read_cpu
from benchmarks.loadgen import LoadSpec
from benchmarks.procs import REPO, VENV_PYTHON

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """How long a cell runs: warm-up, then the measured window (bounded in time and in requests)."""

    duration_s: float
    warmup_s: float
    max_requests: int


def run_loadgen(spec: LoadSpec) -> dict[str, Any]:
    """Run ``benchmarks.loadgen`` in its own process and return its JSON result."""
    limit = spec.warmup_s + spec.duration_s + 2 * spec.timeout_s + 30
    proc = subprocess.run(
        [str(VENV_PYTHON), "-m", "benchmarks.loadgen"],
        input=json.dumps(asdict(spec)),
        capture_output=True,
        text=True,
        timeout=limit,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def idle_cores(pids: dict[str, list[int]], seconds: float) -> dict[str, float]:
    """CPU (in cores) each role burns with no load: Ray's and the engines' background work."""
    before = read_cpu(pids)
    time.sleep(seconds)
    return {role: round(s / seconds, 4) for role, s in cpu_delta(before, read_cpu(pids)).items()}


def per_request_ms(
    cpu_s: dict[str, float], requests: int, wall_s: float, idle: dict[str, float] | None = None
) -> dict[str, float | None]:
    """CPU milliseconds per completed request, per role and in total; with ``idle``, net of the CPU each
    role would have burnt anyway over ``wall_s`` (never below zero)."""
    if requests <= 0:
        return {role: None for role in [*cpu_s, "total"]}
    idle = idle or {}
    net = {role: max(0.0, s - idle.get(role, 0.0) * wall_s) for role, s in cpu_s.items()}
    out: dict[str, float | None] = {role: round(s / requests * 1000, 3) for role, s in net.items()}
    out["total"] = round(sum(net.values()) / requests * 1000, 3)
    return out
