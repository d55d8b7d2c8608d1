"""Gateway processes benchmark: requests/s of 1, 2 and 4 gateway processes side by side, in one run.

    python -m benchmarks gateways [--quick]

The in-gateway upstream path (``openai_upstream`` backend → the mock upstream, the same catalog entry as the
overhead benchmark's) is served by ``maas serve --workers N`` for N = 1, 2 and 4, one after another: the
first process deploys, the others attach, all listen on one port (``SO_REUSEPORT``). The mock upstream
alone is measured first as the ceiling. Each cell is the overhead benchmark's load generator at concurrency
8 and 32, non-stream and stream; the output names the host's cores, since N processes can only help while
there are cores for them (and the mock and the load generator share the same cores here).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.cells import Window
from benchmarks.maas_server import process_roles, start_maas
from benchmarks.machine import machine_info, versions
from benchmarks.overhead import (
    OPENAI_UPSTREAM_PATH,
    bench_catalog,
    measure_subject,
    openai_upstream_models,
    write_catalog,
)
from benchmarks.procs import VENV_PYTHON
from benchmarks.subjects import Subject, direct_subject, mock_upstream

GATEWAYS = (1, 2, 4)
CONCURRENCY = (8, 32)
QUICK = Window(duration_s=5, warmup_s=1, max_requests=50_000)
FULL = Window(duration_s=20, warmup_s=3, max_requests=500_000)
IDLE_S = 2.0


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each cell's requests/s over the one-gateway figure of the same cell."""
    one = {(r["scenario"], r["concurrency"]): r["rps"] for r in rows if r["system"] == "maas-1-gateway"}
    out = []
    for row in rows:
        base = one.get((row["scenario"], row["concurrency"]))
        if row["system"].startswith("maas-") and base:
            out.append(
                {
                    "system": row["system"],
                    "scenario": row["scenario"],
                    "concurrency": row["concurrency"],
                    "rps": row["rps"],
                    "rps_over_1_gateway": round(row["rps"] / base, 3),
                }
            )
    return out


def run(quick: bool, results_dir: Path, command: str) -> dict[str, Any]:
    started = time.monotonic()
    machine = machine_info()
    window = QUICK if quick else FULL
    work = Path(tempfile.mkdtemp(prefix="maas-bench-gateways-"))
    logs = work / "logs"
    weights, _, engine = bench_catalog(work)
    rows: list[dict[str, Any]] = []
    systems: dict[str, dict[str, Any]] = {}

    def measure(subject: Subject) -> None:
        systems[subject.system], measured = measure_subject(subject, CONCURRENCY, window, IDLE_S)
        rows.extend(measured)

    with mock_upstream(engine.model_dump(), logs) as mock:
        measure(direct_subject(mock))
        models, pools, unavailable = openai_upstream_models(weights, f"{mock.base_url}/v1")
        if unavailable is not None:
            raise RuntimeError(f"the openai_upstream path is {unavailable}")
        _, model = OPENAI_UPSTREAM_PATH
        catalog = write_catalog(work, [m for m in models if m["name"] == model], pools)
        for count in GATEWAYS:
            launcher = (str(VENV_PYTHON), "-m", "gateway.cli", "serve", "--workers", str(count))
            gateway = start_maas(catalog, log_dir=logs, models_dir=None, launcher=launcher)
            root = gateway.server.pid
            try:
                measure(
                    Subject(
                        system=f"maas-{count}-gateway" + ("s" if count > 1 else ""),
                        description=f"`maas serve --workers {count}` → openai_upstream → the mock upstream",
                        base_url=gateway.server.base_url,
                        model=model,
                        headers=gateway.headers,
                        cpu_pids=lambda root=root: {**process_roles(root), "upstream": [mock.pid]},
                        metrics=False,  # /metrics is per process: one worker's view would mislead
                    )
                )
            finally:
                gateway.server.stop(grace_s=90)

    result: dict[str, Any] = {
        "benchmark": "gateways",
        "command": command,
        "quick": quick,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "versions": versions({}),
        "window": {"duration_s": window.duration_s, "warmup_s": window.warmup_s},
        "systems": systems,
        "results": rows,
        "ratios": _ratios(rows),
        "logs": str(logs),
        "wall_s": round(time.monotonic() - started, 1),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "gateways-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
