"""Who wakes up beside the engine: per-process wake-ups and CPU, idle and under one stream at a time.

On a small CPU host vLLM's OpenMP threads hold every core, so each wake-up of any other process preempts
an engine thread, and the other thread waits for it at the next barrier: at low concurrency what a server
costs the engine is its processes' wake-ups and CPU, whether or not they are on the request's path.

For each system (``engine-alone``: vLLM's ``AsyncLLM`` in one process, no server; ``vllm-direct``;
``maas``): the seconds for the same requests one after another (48 greedy tokens each), and, over an idle
window and over that load, every process's context switches per second (voluntary: it slept and was
woken; involuntary: it was preempted) and CPU milliseconds per second, read from ``/proc``. The engine's
involuntary switches per second are its preemptions.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.e2e_systems import SERVED_NAME, engine_settings, maas, vllm_direct
from benchmarks.engine_alone import MAX_TOKENS, PROMPT
from benchmarks.machine import machine_info, versions
from benchmarks.procs import REPO, VENV_PYTHON

logger = logging.getLogger(__name__)

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _process_state(pid: int) -> tuple[int, int, float]:
    """Voluntary and involuntary context switches of every thread of ``pid`` (``status`` counts only the
    thread it names), and the process's CPU seconds (``stat`` counts all its threads)."""
    voluntary = involuntary = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        voluntary += int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
        involuntary += int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return voluntary, involuntary, (int(fields[11]) + int(fields[12])) * TICK_S


def _title(pid: int) -> str:
    """A process's name as ``ps`` shows it (Ray and vLLM rename theirs), shortened."""
    comm = Path(f"/proc/{pid}/comm").read_text().strip()
    if comm not in ("python", "python3"):  # Ray's and vLLM's processes name themselves
        return comm
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    module = next((a.decode() for a in argv[1:] if a and not a.startswith(b"-")), comm)
    return module.rsplit("/", 1)[-1][:40]


def _snapshot() -> dict[int, tuple[str, int, int, float]]:
    found: dict[int, tuple[str, int, int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            found[int(entry)] = (_title(int(entry)), *_process_state(int(entry)))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or a kernel thread without a status we can read
    return found


def observe(action: Callable[[], Any]) -> tuple[Any, list[dict[str, Any]]]:
    """Run ``action``; every process's wake-ups and CPU per second meanwhile (the busiest first)."""
    before, started = _snapshot(), time.perf_counter()
    value = action()
    seconds, after = time.perf_counter() - started, _snapshot()
    rows = []
    for pid, (title, voluntary, involuntary, cpu) in after.items():
        if pid not in before or before[pid][0] != title:
            continue
        _, v0, i0, c0 = before[pid]
        rows.append(
            {
                "pid": pid,
                "process": title,
                "woken_per_s": round((voluntary - v0) / seconds, 1),
                "preempted_per_s": round((involuntary - i0) / seconds, 1),
                "cpu_ms_per_s": round((cpu - c0) * 1000 / seconds, 1),
            }
        )
    rows.sort(key=lambda r: -(r["woken_per_s"] + r["preempted_per_s"]))
    return value, [r for r in rows if r["woken_per_s"] + r["preempted_per_s"] >= 1]


def stream_requests(base_url: str, api_key: str | None, requests: int) -> float:
    """Seconds for ``requests`` streamed chat completions one after another."""
    body = {
        "model": SERVED_NAME,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
        started = time.perf_counter()
        for _ in range(requests):
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                response.raise_for_status()
                for _ in response.iter_lines():
                    pass
        return time.perf_counter() - started


def _summary(rows: list[dict[str, Any]], engine_pids: set[int], system_pids: set[int]) -> dict[str, Any]:
    """Totals of the engine and of the system's other processes (the machine's own services apart)."""
    others = [r for r in rows if r["pid"] in system_pids - engine_pids]
    engine = [r for r in rows if r["pid"] in engine_pids]
    return {
        "engine_preempted_per_s": round(sum(r["preempted_per_s"] for r in engine), 1),
        "others_woken_per_s": round(sum(r["woken_per_s"] + r["preempted_per_s"] for r in others), 1),
        "others_cpu_ms_per_s": round(sum(r["cpu_ms_per_s"] for r in others), 1),
        "others": len(others),
    }


def _server_cell(endpoint: Any, requests: int, rounds: int, idle_s: float) -> dict[str, Any]:
    roles: dict[str, list[int]] = endpoint.cpu_pids()
    system_pids = {pid for pids in roles.values() for pid in pids}
    engine_pids = set(roles.get("model", [])) | set(roles.get("engine", []))
    stream_requests(endpoint.base_url, endpoint.api_key, 2)  # warm
    _, idle = observe(lambda: time.sleep(idle_s))
    seconds, loaded = [], []
    for _ in range(rounds):
        took, rows = observe(lambda: stream_requests(endpoint.base_url, endpoint.api_key, requests))
        seconds.append(round(took, 2))
        loaded = rows
    return {
        "seconds": seconds,
        "idle": {"summary": _summary(idle, engine_pids, system_pids), "processes": idle[:20]},
        "load": {"summary": _summary(loaded, engine_pids, system_pids), "processes": loaded[:20]},
    }


def _engine_alone(requests: int, rounds: int) -> dict[str, Any]:
    out = subprocess.run(
        [str(VENV_PYTHON), "-m", "benchmarks.engine_alone", str(requests), str(rounds)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    ).stdout
    return {
        "seconds": [
            round(json.loads(line)["seconds"], 2) for line in out.splitlines() if line.startswith("{")
        ]
    }


def run(quick: bool, results_dir: Path, command: str) -> dict[str, Any]:
    machine = machine_info()
    requests, rounds, idle_s = (8, 3, 10.0) if quick else (16, 5, 20.0)
    settings, log_dir = engine_settings(), results_dir / "logs"
    systems: dict[str, dict[str, Any]] = {"engine-alone": _engine_alone(requests, rounds)}
    logger.info("engine-alone: %s s", systems["engine-alone"]["seconds"])
    for name, factory in (("vllm-direct", vllm_direct), ("maas", maas)):
        with factory(settings, log_dir) as endpoint:
            systems[name] = _server_cell(endpoint, requests, rounds, idle_s)
        logger.info("%s: %s s", name, systems[name]["seconds"])
    floor = statistics.median(systems["engine-alone"]["seconds"])
    for cell in systems.values():
        cell["over_engine_alone"] = round(statistics.median(cell["seconds"]) / floor, 3)
    result = {
        "benchmark": "wakeups",
        "command": command,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "versions": versions(),
        "requests_per_round": requests,
        "max_tokens": MAX_TOKENS,
        "systems": systems,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"wakeups{'-quick' if quick else ''}-latest.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )
    return result


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        f"Command: `{result['command']}` ({result['finished_at']})",
        "",
        f"Machine: {machine['cores']} cores, {machine['cpu_model']}, CPU features "
        f"{', '.join(machine['cpu_features']) or 'none of avx2/avx512f/amx_tile'}.",
        "",
        f"{result['requests_per_round']} streamed requests one after another, "
        f"{result['max_tokens']} tokens each.",
        "",
        "| system | seconds per round | over the engine alone | idle: others woken/s, CPU ms/s | "
        "load: engine preempted/s | load: others woken/s, CPU ms/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, cell in result["systems"].items():
        idle, load = cell.get("idle", {}).get("summary"), cell.get("load", {}).get("summary")
        lines.append(
            f"| {name} | {', '.join(f'{s:.2f}' for s in cell['seconds'])} | {cell['over_engine_alone']} | "
            + (f"{idle['others_woken_per_s']}, {idle['others_cpu_ms_per_s']} | " if idle else "- | ")
            + (
                f"{load['engine_preempted_per_s']} | "
                f"{load['others_woken_per_s']}, {load['others_cpu_ms_per_s']} |"
                if load
                else "- | - |"
            )
        )
    for name, cell in result["systems"].items():
        if "idle" not in cell:
            continue
        lines += ["", f"{name}, idle, per process:", "", "| process | woken/s | preempted/s | CPU ms/s |"]
        lines.append("|---|---|---|---|")
        for row in cell["idle"]["processes"][:12]:
            cells = (row["process"], row["woken_per_s"], row["preempted_per_s"], row["cpu_ms_per_s"])
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)
