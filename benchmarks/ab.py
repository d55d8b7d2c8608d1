"""Two versions of the gateway's upstream path side by side, in alternating cells: did a change help?

    python -m benchmarks ab --base /path/to/other/checkout [--rounds 20] [--stream]

On the small VMs these benchmarks run on, the same cell moves by half a millisecond and more from one
minute to the next, so two runs of the overhead benchmark minutes apart cannot tell a 0.2 ms change.
Here one mock upstream serves two gateways at once: ``A`` from ``--base`` (another checkout of the
repository, run with this checkout's environment) and ``B`` from this checkout, each serving only the
``openai_upstream`` model of the benchmark catalog (no Ray). Each round measures direct then A, and
direct then B (the order flipped every other round), in short c=1 cells; every gateway figure is taken
against the direct cell just before it, and the verdict is the median of B - A over the rounds. Each
cell also reads the gateway process's CPU per request, which moves less than latency here: a change of
a few hundredths of a millisecond shows in its median over 16 rounds.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import overhead
from benchmarks.cells import Window
from benchmarks.maas_server import start_maas
from benchmarks.machine import machine_info, versions
from benchmarks.procs import VENV_PYTHON
from benchmarks.subjects import Subject, direct_subject, mock_upstream

CELL = Window(duration_s=1.5, warmup_s=0.3, max_requests=50_000)


def _subject(system: str, base_url: str, headers: dict[str, str], pid: int) -> Subject:
    model = overhead.OPENAI_UPSTREAM_PATH[1]
    return Subject(
        system=system,
        description=system,
        base_url=base_url,
        model=model,
        headers=headers,
        cpu_pids=lambda: {"front": [pid]},
    )


def run(base: Path, rounds: int, stream: bool, results_dir: Path, command: str) -> dict[str, Any]:
    started = time.monotonic()
    machine = machine_info()
    scenario = overhead.SCENARIOS[1] if stream else overhead.SCENARIOS[0]
    key = "ttft_p50_ms" if stream else "p50_ms"
    work = Path(tempfile.mkdtemp(prefix="maas-bench-ab-"))
    weights, _, engine = overhead.bench_catalog(work)
    added: dict[str, list[float]] = {"A": [], "B": []}
    cpu: dict[str, list[float]] = {"A": [], "B": []}
    with mock_upstream(engine.model_dump(), work / "logs") as mock:
        models, pools, unavailable = overhead.openai_upstream_models(weights, f"{mock.base_url}/v1")
        if unavailable is not None:
            raise SystemExit(f"the upstream path is {unavailable}")
        catalog = overhead.write_catalog(work, models, pools)
        serve_base = f'cd "{base}" && exec "{VENV_PYTHON}" -m gateway.cli serve "$@"'
        launch_base = ["bash", "-c", serve_base, "serve"]
        gateways = {
            "A": start_maas(
                catalog,
                log_dir=work / "A",
                models_dir=None,
                launcher=launch_base,
                extra_env={"PYTHONPATH": str(base)},
            ),
            "B": start_maas(catalog, log_dir=work / "B", models_dir=None),
        }
        try:
            subjects = {
                name: _subject(name, gate.server.base_url, gate.headers, gate.server.pid)
                for name, gate in gateways.items()
            }
            direct = direct_subject(mock)
            for subject in subjects.values():  # warm both
                overhead.measure_cell(subject, scenario, 1, CELL, {})
            for round_no in range(rounds):
                for name in ("A", "B") if round_no % 2 == 0 else ("B", "A"):
                    before = overhead.measure_cell(direct, scenario, 1, CELL, {})
                    cell = overhead.measure_cell(subjects[name], scenario, 1, CELL, {})
                    added[name].append(round(float(cell[key]) - float(before[key]), 3))
                    cpu[name].append(float(cell["cpu_ms_per_request"]["front"]))
        finally:
            for gateway in gateways.values():
                gateway.server.stop()
    differences = [round(b - a, 3) for a, b in zip(added["A"], added["B"], strict=True)]
    result: dict[str, Any] = {
        "benchmark": "ab",
        "command": command,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "versions": versions(),
        "base": str(base),
        "scenario": scenario.name,
        "figure": f"{key} added over direct, c=1",
        "added_ms": added,
        "median_added_ms": {name: round(statistics.median(values), 3) for name, values in added.items()},
        "b_minus_a_ms": differences,
        "median_b_minus_a_ms": round(statistics.median(differences), 3),
        "rounds_b_faster": sum(d < 0 for d in differences),
        # The gateway process's CPU per request in the same cells: steadier than latency on these VMs.
        "cpu_ms_per_request": cpu,
        "median_cpu_ms_per_request": {name: round(statistics.median(v), 3) for name, v in cpu.items()},
        "median_cpu_b_minus_a_ms": round(
            statistics.median(b - a for a, b in zip(cpu["A"], cpu["B"], strict=True)), 3
        ),
        "wall_s": round(time.monotonic() - started, 1),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "ab-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
