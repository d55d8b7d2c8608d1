"""Closed-loop load generator, run in its own process: ``python -m benchmarks.loadgen < spec.json``.

Reads a ``LoadSpec`` as JSON on stdin and prints the result as JSON on stdout. ``concurrency`` workers
each send one request after another to a loopback URL over keep-alive connections, first for a warm-up,
then for the measured window, which ends at ``max_requests`` started or ``duration_s``, whichever comes
first (requests in flight then finish). CPU seconds of the server processes named in ``cpu_pids`` are
read at the window's edges.

Per request it records the latency; for streams also the time to the first chunk that carries content
(TTFT) and the gaps between content chunks, as vLLM's ``bench serve`` does (a role-only chunk is not a
token); and the gateway's own ``x-maas-gateway-overhead-ms`` header when the server sends one.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from benchmarks.cpu import cpu_delta, machine_busy_seconds, read_cpu
from benchmarks.stats import summary_ms

OVERHEAD_HEADER = "x-maas-gateway-overhead-ms"
_ERROR_SAMPLES = 3


@dataclass(frozen=True)
class LoadSpec:
    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    concurrency: int = 1
    max_requests: int = 1000
    duration_s: float = 10.0
    warmup_s: float = 1.0
    timeout_s: float = 60.0
    cpu_pids: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class Sample:
    latency_s: float
    ttft_s: float | None = None
    gaps_s: list[float] = field(default_factory=list)
    chunks: int = 0
    overhead_ms: float | None = None


class RequestFailed(Exception):
    pass


async def _one(session: aiohttp.ClientSession, spec: LoadSpec, stream: bool) -> Sample:
    started = time.perf_counter()
    async with session.post(spec.url, json=spec.body, headers=spec.headers) as response:
        header = response.headers.get(OVERHEAD_HEADER)
        if response.status != 200:
            raise RequestFailed(f"HTTP {response.status}: {(await response.text())[:200]}")
        sample = Sample(latency_s=0.0, overhead_ms=float(header) if header else None)
        if not stream:
            body = await response.json(content_type=None)
            if not body.get("choices") and not body.get("data"):  # completions, or embeddings
                raise RequestFailed(f"no choices or data: {str(body)[:200]}")
            sample.latency_s = time.perf_counter() - started
            return sample
        last = started
        async for line in response.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            now = time.perf_counter()
            event = json.loads(line[6:])
            if "error" in event:
                raise RequestFailed(f"stream error event: {str(event)[:200]}")
            choices = event.get("choices") or []
            if not any((c.get("delta") or {}).get("content") for c in choices):
                continue
            if sample.ttft_s is None:
                sample.ttft_s = now - started
            else:
                sample.gaps_s.append(now - last)
            sample.chunks += 1
            last = now
        sample.latency_s = time.perf_counter() - started
        if sample.chunks == 0:
            raise RequestFailed("stream carried no content")
        return sample


async def _phase(
    session: aiohttp.ClientSession, spec: LoadSpec, duration_s: float, max_requests: int
) -> tuple[list[Sample], list[str], float]:
    stream = bool(spec.body.get("stream"))
    samples: list[Sample] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + duration_s
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while issued < max_requests and time.perf_counter() < deadline:
            issued += 1
            try:
                samples.append(await _one(session, spec, stream))
            except (TimeoutError, aiohttp.ClientError, RequestFailed, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    return samples, errors, time.perf_counter() - started


async def run(spec: LoadSpec) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=spec.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if spec.warmup_s > 0:
            await _phase(session, spec, spec.warmup_s, max(spec.concurrency * 4, 8))
        cpu_before = read_cpu(spec.cpu_pids)
        machine_before = machine_busy_seconds()
        own_before = os.times()
        samples, errors, wall = await _phase(session, spec, spec.duration_s, spec.max_requests)
        own_after = os.times()
        busy = machine_busy_seconds() - machine_before
        cpu = cpu_delta(cpu_before, read_cpu(spec.cpu_pids))
    done = len(samples)
    gaps = [g for s in samples for g in s.gaps_s]
    overheads = [s.overhead_ms / 1000 for s in samples if s.overhead_ms is not None]
    return {
        "requests": done,
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:_ERROR_SAMPLES],
        "wall_s": round(wall, 3),
        "rps": round(done / wall, 2) if wall > 0 else 0.0,
        "latency_ms": summary_ms([s.latency_s for s in samples]),
        "ttft_ms": summary_ms([s.ttft_s for s in samples if s.ttft_s is not None]),
        "gap_ms": summary_ms(gaps),
        "chunks_per_request": round(sum(s.chunks for s in samples) / done, 2) if done else None,
        "gateway_overhead_header_ms": summary_ms(overheads) if overheads else None,
        "cpu_s": cpu,
        "loadgen_cpu_s": round(own_after.user + own_after.system - own_before.user - own_before.system, 3),
        "machine_busy_cpu_s": round(busy, 3),
    }


def main() -> int:
    spec = LoadSpec(**json.load(sys.stdin))
    try:
        import uvloop

        result = uvloop.run(run(spec))
    except ImportError:
        result = asyncio.run(run(spec))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
