"""Requests/s of the gateway with metering on versus off, same load, same run.

    python -m benchmarks.metering [--duration 8]

Starts ``benchmarks.metering_server`` twice (metering on: the durable SQLite ledger; off: a store that
writes nothing), drives each with ``benchmarks.loadgen`` at concurrency 1 and 32, stream and non-stream,
and writes ``benchmarks/results/metering-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from benchmarks.loadgen import LoadSpec
from benchmarks.machine import machine_info
from benchmarks.procs import free_port, start_server

RESULTS = Path(__file__).resolve().parent / "results"


def _load(spec: LoadSpec) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen"],
        input=json.dumps(asdict(spec)),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _wait(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="maas-metering-") as tmp:
        for metering in ("off", "on"):
            port = free_port()
            home = Path(tmp) / metering
            server = start_server(
                f"metering-{metering}",
                [
                    sys.executable,
                    "-m",
                    "benchmarks.metering_server",
                    "--port",
                    str(port),
                    "--home",
                    str(home),
                    "--metering",
                    metering,
                ],
                port=port,
                log_dir=Path(tmp),
            )
            try:
                _wait(f"http://127.0.0.1:{port}/health")
                key = (home / "key").read_text()
                for stream in (False, True):
                    for concurrency in (1, 32):
                        spec = LoadSpec(
                            url=f"http://127.0.0.1:{port}/v1/chat/completions",
                            body={
                                "model": "instant",
                                "messages": [{"role": "user", "content": "hi"}],
                                "max_tokens": 16,
                                "stream": stream,
                            },
                            headers={"Authorization": f"Bearer {key}"},
                            concurrency=concurrency,
                            max_requests=20_000,
                            duration_s=args.duration,
                            cpu_pids={"gateway": [server.pid]},
                        )
                        result = _load(spec)
                        rows.append(
                            {
                                "metering": metering,
                                "stream": stream,
                                "concurrency": concurrency,
                                "rps": result["rps"],
                                "p50_ms": result["latency_ms"]["p50"],
                                "p99_ms": result["latency_ms"]["p99"],
                                "errors": result["errors"],
                                "gateway_cpu_s": result["cpu_s"],
                            }
                        )
            finally:
                server.stop()
    ratios = {}
    for stream in (False, True):
        for concurrency in (1, 32):
            on, off = (
                next(
                    r
                    for r in rows
                    if r["metering"] == m and r["stream"] == stream and r["concurrency"] == concurrency
                )
                for m in ("on", "off")
            )
            ratios[f"{'stream' if stream else 'non-stream'} c={concurrency}"] = round(
                on["rps"] / off["rps"], 3
            )
    report = {
        "command": "python -m benchmarks.metering " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "rows": rows,
        "rps_ratio_on_over_off": ratios,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "metering-latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
