"""Where the gateway front's CPU goes below Python: ``perf`` on the front and on the bare ASGI proxy.

    python -m benchmarks profile --sampler perf --path upstream

py-spy and yappi see Python frames; they cannot say how much of a request's CPU is the interpreter itself,
the kernel (and which system call), SQLite or uvloop. ``perf record -e cpu-clock`` counts only time on a
CPU, in every shared object, the kernel included, and needs no hardware counters (these VMs have none).
Non-stream c=1 on the upstream path, the gateway and the bare proxy (``benchmarks.asgi_floor``) in
alternating cells in front of the same mock; each report line is microseconds of CPU per request:
``U`` user space by shared object, ``K`` kernel time by the system call it ran for (``via f``: the chain
perf recorded holds no system call's frame, and ``f`` is the user-space function that entered the
kernel, such as libc's ``write``; else interrupts and other kernel work). The report goes to
``benchmarks/results/perf-upstream-nonstream-c1.txt``.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.cells import run_loadgen
from benchmarks.loadgen import LoadSpec
from benchmarks.maas_server import start_maas
from benchmarks.overhead import (
    SCENARIOS,
    bench_catalog,
    openai_upstream_models,
    request_body,
    write_catalog,
)
from benchmarks.procs import Server
from benchmarks.subjects import asgi_floor_subject, mock_upstream

RATE_HZ = 2000
SECONDS = 7.0
ROUNDS = 2
TOP = 14


def breakdown(script: str) -> collections.Counter[str]:
    """Nanoseconds of CPU by where they were spent, from ``perf script -F period,ip,sym,dso`` output with
    call chains (one block a sample: its period, then its frames, innermost first)."""
    spent: collections.Counter[str] = collections.Counter()
    for block in script.split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines()]
        if not lines or not lines[0].split()[0].isdigit():
            continue
        period, frames = int(lines[0].split()[0]), lines[1:]
        innermost = frames[0] if frames else ""
        if "[kernel" in innermost:
            call = next((f.split()[1] for f in frames if "__x64_sys_" in f or "__do_sys_" in f), None)
            if call is None:  # no system call in the recorded chain: the user-space function that entered
                entry = next((f.split()[1] for f in frames if "[kernel" not in f), None)
                call = f"via {entry}" if entry else "interrupts and kernel work outside a call"
            spent[f"K {call}"] += period
        else:
            spent[f"U {innermost.rsplit('(', 1)[-1].rstrip(')').rsplit('/', 1)[-1] or '?'}"] += period
    return spent


def report(title: str, cells: dict[str, tuple[collections.Counter[str], int]]) -> str:
    """Microseconds per request by place: each cell's total, then its top ``TOP`` places, one cell after
    another."""
    lines = [title, ""]
    for name, (spent, requests) in cells.items():
        total = sum(spent.values())
        lines += [f"## {name}: {requests} requests, {total / 1000 / max(1, requests):.1f} us of CPU each", ""]
        for place, ns in spent.most_common(TOP):
            share = 100 * ns / max(1, total)
            lines.append(f"{ns / 1000 / max(1, requests):8.1f} us  {share:5.1f} %  {place}")
        lines.append("")
    return "\n".join(lines)


def run(results_dir: Path, command: str, path: str = "upstream") -> dict[str, Any]:
    if path != "upstream":
        raise SystemExit("the perf sampler profiles the upstream path, beside the bare proxy")
    if shutil.which("perf") is None:
        raise SystemExit("perf is not installed (Debian: linux-perf)")
    work = Path(tempfile.mkdtemp(prefix="maas-bench-perf-"))
    weights, _, engine = bench_catalog(work)
    with mock_upstream(engine.model_dump(), work / "logs") as mock:
        models, _, unavailable = openai_upstream_models(weights, f"{mock.base_url}/v1")
        if unavailable:
            raise SystemExit(f"the upstream path is {unavailable}")
        return _sample(results_dir, command, work, mock, models)


def _cell(name: str, url: str, model: str, headers: dict[str, str], pid: int, work: Path) -> tuple[Any, int]:
    spec = LoadSpec(
        url=url,
        body=request_body(model, SCENARIOS[0]),
        headers=headers,
        concurrency=1,
        duration_s=1.0,
        warmup_s=0,
        max_requests=100_000,
        cpu_pids={"front": [pid]},
    )
    run_loadgen(spec)  # warm
    data = work / f"{name}.perf"
    record = ["perf", "record", "-e", "cpu-clock", "-F", str(RATE_HZ), "-g", "-p", str(pid), "-o", str(data)]
    sampler = subprocess.Popen(
        [*record, "--", "sleep", str(SECONDS + 0.5)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(0.3)
    measured = run_loadgen(LoadSpec(**{**spec.__dict__, "duration_s": SECONDS}))
    sampler.wait(timeout=SECONDS + 30)
    script = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "period,ip,sym,dso"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return breakdown(script), int(measured["requests"])


def _sample(
    results_dir: Path, command: str, work: Path, mock: Server, models: list[dict[str, Any]]
) -> dict[str, Any]:
    gateway = start_maas(write_catalog(work, models), log_dir=work / "logs", models_dir=None)
    model = models[0]["name"]
    cells: dict[str, tuple[collections.Counter[str], int]] = {}
    try:
        with asgi_floor_subject(mock, work / "logs") as floor:
            floor_pid = floor.cpu_pids()["proxy"][0]
            for round_no in range(1, ROUNDS + 1):
                cells[f"bare ASGI proxy, round {round_no}"] = _cell(
                    f"floor{round_no}", f"{floor.base_url}/v1/chat/completions", "bench", {}, floor_pid, work
                )
                cells[f"gateway, round {round_no}"] = _cell(
                    f"gateway{round_no}",
                    f"{gateway.server.base_url}/v1/chat/completions",
                    model,
                    gateway.headers,
                    gateway.server.pid,
                    work,
                )
    finally:
        gateway.server.stop(grace_s=90)
    title = (
        f"# perf (cpu-clock, {RATE_HZ} Hz, call chains) on the front: upstream path, nonstream, "
        f"concurrency 1, {SECONDS:.0f} s a cell\n# command: {command}"
    )
    results_dir.mkdir(parents=True, exist_ok=True)
    target = results_dir / "perf-upstream-nonstream-c1.txt"
    target.write_text(report(title, cells))
    return {"command": command, "report": str(target), "requests": {k: v[1] for k, v in cells.items()}}
