"""Where the gateway front's time goes, sampled: py-spy on the front process during overhead-benchmark load.

    python -m benchmarks profile --sampler py-spy [--path upstream]

yappi (``benchmarks.profile``) hooks every call, so call-heavy code (prometheus' ``labels``, generators)
looks several times dearer than it is; a sampler reads the stacks 1,000 times a second from outside and
slows nothing down, so its shares are the real ones. Idle stacks (a thread waiting in ``epoll`` or on a
lock) are left out: what is counted is time on the CPU or in a system call; a system call's time (a socket
send, on loopback the receiver's TCP work too) counts for the Python frame that made it, and uvloop's own C
code for ``Runner.run``. Each cell's report,
``benchmarks/results/spy-<path>-<scenario>-c<N>.txt``, gives the samples per thread, the event loop's own
time by the package its innermost frame is in, the inclusive time of the request path's stages, and the top
functions.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import subprocess
from pathlib import Path
from typing import Any

from benchmarks import profile
from benchmarks.cells import run_loadgen
from benchmarks.loadgen import LoadSpec
from benchmarks.maas_server import process_roles, start_maas
from benchmarks.overhead import SCENARIOS, request_body, write_catalog
from benchmarks.venvs import ensure_venv

logger = logging.getLogger(__name__)

CELLS = (("nonstream", 1), ("stream", 1), ("nonstream", 32))
DURATION_S = 10
RATE_HZ = 1000

# Where a sample's innermost frame is, by its file: the first pattern that matches names the package.
PACKAGES = (
    ("uvicorn", "uvicorn/"),
    ("starlette+fastapi", "starlette/"),
    ("starlette+fastapi", "fastapi/"),
    ("pydantic", "pydantic"),
    ("aiohttp", "aiohttp/"),
    ("aiohttp", "multidict/"),
    ("aiohttp", "yarl/"),
    ("prometheus", "prometheus_client/"),
    ("logging", "logging/"),
    ("asyncio", "asyncio/"),
    ("json", "json/"),
    ("sqlite (ledger)", "sqlite3/"),
    ("threading/queue", "threading.py"),
    ("threading/queue", "queue.py"),
    ("gateway.billing", "gateway/billing/"),
    ("gateway.api", "gateway/api/"),
    ("gateway.placement", "gateway/placement/"),
    ("gateway.serving", "gateway/serving/"),
    ("gateway.observability", "gateway/observability/"),
    ("gateway.protocol", "gateway/protocol/"),
    ("gateway.tenancy", "gateway/tenancy/"),
    ("gateway (other)", "gateway/"),
    ("backends", "backends/"),
)
# Stages of the request path, counted inclusively (a sample counts for every stage on its stack): a part of
# "file:Class.function" as py-spy names frames. py-spy cuts deep stacks at the top (the ASGI middlewares'
# coroutine chain is deep), so outer stages count low: the packages above are the sure figures.
STAGES = (
    ("HTTP in (uvicorn, request parsing)", "httptools_impl.py:HttpToolsProtocol.data_received"),
    ("ASGI app (everything under the route)", "fastapi/applications.py:FastAPI.__call__"),
    ("route handler", "gateway/api/chat_completions.py:create_chat_completion"),
    ("body parsing (pydantic)", "gateway/api/deps.py:parse_body"),
    ("auth", "gateway/api/deps.py:authenticate"),
    ("run_call", "gateway/api/generation.py:run_call"),
    ("dispatch (placement, slot, first chunk)", "gateway/api/dispatch.py:dispatch"),
    ("backend (upstream call, in-gateway)", "backends/openai_upstream.py:OpenAIUpstreamBackend.generate"),
    ("replica channel", "gateway/serving/replica_channels.py"),
    ("metering (record, metrics, log)", "gateway/billing/metering.py:Meter._hand_over"),
    ("usage log line", "logging/__init__.py:Logger.info"),
    ("ledger writer thread", "gateway/billing/ledger/writer.py"),
    ("SSE encoding", "gateway/streaming.py:sse_stream"),
    ("response send (uvicorn)", "httptools_impl.py:RequestResponseCycle.send"),
)
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def _frames(stack: str) -> tuple[str, list[tuple[str, str]]]:
    """A raw py-spy line's thread name and its frames, outermost first, as (file, function)."""
    parts = stack.split(";")
    frames = []
    for part in parts[1:]:  # "function (file:line)"
        match = _FRAME.match(part)
        if match is not None:
            frames.append((match["file"], match["function"]))
    return parts[0], frames


def _package(file: str, function: str) -> str:
    if function == "Runner.run":  # uvloop's loop is C under this frame: polling, callbacks, socket reads
        return "the loop itself (uvloop, in C: polls, callbacks, socket reads)"
    for name, pattern in PACKAGES:
        if pattern in file:
            return name
    return "other (C extensions, stdlib)"


def summarize(raw: str, title: str) -> str:
    """The report of one cell from py-spy's ``raw`` (collapsed stacks) output."""
    threads: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    stages: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    loop_samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        thread, frames = _frames(stack)
        if frames and frames[-1][0].endswith("threading.py") and frames[-1][1].endswith(".wait"):
            continue  # a thread waiting on a lock or condition is idle (py-spy's --nonblocking counts it)
        name = thread.split(": ", 1)[-1]  # "thread (TID): NAME"
        kind = "event loop" if name == "MainThread" else name
        threads[kind] += n
        if not frames:
            continue
        text = ";".join(f"{file}:{function}" for file, function in frames)
        for name, pattern in STAGES:
            if pattern in text:
                stages[name] += n
        file, function = frames[-1]
        own[f"{file.split('site-packages/')[-1]}:{function}"] += n
        if kind == "event loop":
            loop_samples += n
            packages[_package(file, function)] += n
    total = sum(threads.values())
    lines = [
        title,
        "",
        f"samples on the CPU: {total} ({1000 * total / RATE_HZ:.0f} ms of CPU at {RATE_HZ} Hz)",
    ]
    lines += ["", "## by thread", ""]
    lines += [f"{n:7d}  {100 * n / max(1, total):5.1f} %  {name}" for name, n in threads.most_common()]
    lines += ["", "## the event loop's samples by the package of their innermost frame", ""]
    lines += [
        f"{n:7d}  {100 * n / max(1, loop_samples):5.1f} %  {name}" for name, n in packages.most_common()
    ]
    lines += ["", "## stages of the request path (inclusive, every thread; outer ones count low)", ""]
    lines += [f"{stages[name]:7d}  {100 * stages[name] / max(1, total):5.1f} %  {name}" for name, _ in STAGES]
    lines += ["", "## top 40 functions by own samples", ""]
    lines += [f"{n:7d}  {100 * n / max(1, total):5.1f} %  {name}" for name, n in own.most_common(40)]
    return "\n".join(lines) + "\n"


def run(results_dir: Path, command: str, path: str = "replica") -> dict[str, Any]:
    """Sample the gateway front on the replica path, or (``path="upstream"``) the in-gateway
    openai_upstream path in front of the mock upstream."""
    return profile.run(results_dir, command, path, profiler=_sample)


def _sample(
    results_dir: Path, command: str, work: Path, models: list[dict[str, Any]], model: str, prefix: str
) -> dict[str, Any]:
    label = prefix.rstrip("-") or "replica"
    spy = ensure_venv("sampler", ["py-spy>=0.4"]) / "bin" / "py-spy"
    gateway = start_maas(write_catalog(work, models), log_dir=work / "logs", models_dir=None)
    scenarios = {s.name: s for s in SCENARIOS}
    summary: dict[str, Any] = {"command": command, "cells": []}
    results_dir.mkdir(parents=True, exist_ok=True)
    try:
        for name, concurrency in CELLS:
            spec = LoadSpec(
                url=f"{gateway.server.base_url}/v1/chat/completions",
                body=request_body(model, scenarios[name]),
                headers=gateway.headers,
                concurrency=concurrency,
                duration_s=2.0,
                warmup_s=0,
                max_requests=100_000,
                cpu_pids=process_roles(gateway.server.pid),
            )
            run_loadgen(spec)  # warm: connections open, code paths run once
            raw_path = work / f"spy-{label}-{name}-c{concurrency}.raw"
            sampler = subprocess.Popen(
                [
                    str(spy),
                    "record",
                    "-p",
                    str(gateway.server.pid),
                    "-r",
                    str(RATE_HZ),
                    "-d",
                    str(int(DURATION_S)),
                ]
                + ["-f", "raw", "-o", str(raw_path), "--threads", "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            measured = run_loadgen(
                LoadSpec(**{**spec.__dict__, "duration_s": DURATION_S - 0.5})  # within the sampled window
            )
            sampler.wait(timeout=DURATION_S + 30)
            title = (
                f"# maas front sampled by py-spy ({RATE_HZ} Hz, wall clock, idle left out): {label} path, "
                f"{name}, concurrency {concurrency}, {measured['requests']} requests in "
                f"{measured['wall_s']} s; CPU s by process role: {json.dumps(measured['cpu_s'])}\n"
                f"# command: {command}"
            )
            target = results_dir / f"spy-{label}-{name}-c{concurrency}.txt"
            target.write_text(summarize(raw_path.read_text(), title))
            summary["cells"].append(
                {
                    "scenario": name,
                    "concurrency": concurrency,
                    "requests": measured["requests"],
                    "report": str(target),
                }
            )
            logger.info("profile written: %s", target)
    finally:
        gateway.server.stop(grace_s=90)
    return summary
