"""Where the gateway's CPU goes: its front process under yappi during overhead-benchmark load.

    python -m benchmarks profile

Starts ``maas serve`` on the overhead catalog (fixed-rate engine) through ``benchmarks.profiled_serve``
in a venv that adds ``yappi`` to the project's packages, then for each cell (non-stream at concurrency 1
and 32, stream at concurrency 1) switches the profiler on, runs the load generator, switches it off and
keeps the report as ``benchmarks/results/profile-<scenario>-c<N>.txt`` (the pstats file stays in the
temporary folder it names). The profiler slows the front
down; read the shares, not the absolute latencies.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.cells import run_loadgen
from benchmarks.loadgen import LoadSpec
from benchmarks.maas_server import process_roles, start_maas
from benchmarks.overhead import (
    SCENARIOS,
    bench_catalog,
    openai_upstream_models,
    request_body,
    write_catalog,
)
from benchmarks.procs import REPO
from benchmarks.subjects import mock_upstream
from benchmarks.venvs import ensure_venv

logger = logging.getLogger(__name__)

CELLS = (("nonstream", 1), ("nonstream", 32), ("stream", 1))
DURATION_S = 5.0


def _wait_for(path: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # the .txt is written after the .pstat


Profiler = Callable[[Path, str, Path, list[dict[str, Any]], str, str], dict[str, Any]]
"""Profiles a gateway serving ``models``: (results folder, command, work folder, models, the model to
load, the path's label: ``""`` for the replica path, ``"upstream-"``) -> summary."""


def run(
    results_dir: Path, command: str, path: str = "replica", profiler: Profiler | None = None
) -> dict[str, Any]:
    """Profile the gateway front on the replica path, or (``path="upstream"``) the in-gateway
    openai_upstream path in front of the mock upstream; with yappi unless another ``profiler`` is given."""
    profile = profiler or _profile
    work = Path(tempfile.mkdtemp(prefix="maas-bench-profile-"))
    weights, catalog, engine = bench_catalog(work)
    if path == "replica":
        return profile(results_dir, command, work, catalog["models"], "bench", "")
    with mock_upstream(engine.model_dump(), work / "logs") as mock:
        models, _, unavailable = openai_upstream_models(weights, f"{mock.base_url}/v1")
        if unavailable:
            raise RuntimeError(unavailable)
        return profile(results_dir, command, work, models, models[0]["name"], "upstream-")


def _profile(
    results_dir: Path, command: str, work: Path, models: list[dict[str, Any]], model: str, label: str
) -> dict[str, Any]:
    venv = ensure_venv("profiler", ["yappi>=1.6"], site_packages_of=REPO / ".venv")
    prefix = work / "profile"
    launcher = (str(venv / "bin" / "python"), "-m", "benchmarks.profiled_serve", str(prefix))
    gateway = start_maas(
        write_catalog(work, models), log_dir=work / "logs", models_dir=None, launcher=launcher
    )
    scenarios = {s.name: s for s in SCENARIOS}
    summary: dict[str, Any] = {"command": command, "cells": []}
    results_dir.mkdir(parents=True, exist_ok=True)
    try:
        for name, concurrency in CELLS:
            for suffix in (".pstat", ".txt"):
                prefix.with_suffix(suffix).unlink(missing_ok=True)
            os.kill(gateway.server.pid, signal.SIGUSR1)
            raw = run_loadgen(
                LoadSpec(
                    url=f"{gateway.server.base_url}/v1/chat/completions",
                    body=request_body(model, scenarios[name]),
                    headers=gateway.headers,
                    concurrency=concurrency,
                    duration_s=DURATION_S,
                    warmup_s=0,
                    max_requests=100_000,
                    cpu_pids=process_roles(gateway.server.pid),
                )
            )
            os.kill(gateway.server.pid, signal.SIGUSR2)
            _wait_for(prefix.with_suffix(".txt"))
            target = results_dir / f"profile-{label}{name}-c{concurrency}.txt"
            header = (
                f"# maas front under yappi (CPU clock): {name}, concurrency {concurrency}, "
                f"{raw['requests']} requests in {raw['wall_s']} s; CPU s by process role: "
                f"{json.dumps(raw['cpu_s'])}\n\n"
            )
            target.write_text(header + prefix.with_suffix(".txt").read_text())
            pstat = work / f"profile-{label}{name}-c{concurrency}.pstat"  # binary: kept out of the repository
            shutil.copy(prefix.with_suffix(".pstat"), pstat)
            summary["cells"].append(
                {
                    "scenario": name,
                    "concurrency": concurrency,
                    "requests": raw["requests"],
                    "cpu_s": raw["cpu_s"],
                    "report": str(target),
                    "pstat": str(pstat),
                }
            )
            logger.info("profile written: %s", target)
    finally:
        gateway.server.stop(grace_s=90)
    return summary
