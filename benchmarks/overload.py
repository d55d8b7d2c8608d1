"""Overload of the real gateway (``models.yaml``: SmolLM2 on vLLM-CPU, 32 in the replica and 32 queued).

A quiet tenant sends one request at a time, alone (its solo latency), then again while a flooding tenant
keeps ten times the model's capacity of requests open (each flooding client waits the Retry-After it was
given, as the openai client does, and asks again). Reported: the quiet tenant's p95 while flooded and its
ratio to its solo p95 (the peer here is the same gateway without the flood, in the same run), how fast
refusals come back, what status each request got, the gateway's memory before and after the flood, and
whether the ledger's counts match what the clients saw."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.maas_server import create_key, maas_env, start_maas
from benchmarks.machine import machine_info, versions
from benchmarks.procs import REPO
from benchmarks.stats import percentile

logger = logging.getLogger(__name__)

MODEL = "smollm2-135m-instruct"
CAPACITY = 64  # models.yaml: max_ongoing_requests 16 + max_queued_requests 48
QUIET_REQUESTS = {True: 12, False: 40}
FLOOD_S = {True: 45, False: 120}
BODY = {"model": MODEL, "max_tokens": 16, "temperature": 0}


async def _call(client: httpx.AsyncClient, key: str, i: int) -> tuple[int, float, float]:
    """(status, seconds, the Retry-After it was given)."""
    started = time.perf_counter()
    body = {**BODY, "messages": [{"role": "user", "content": f"Name a colour, please ({i})."}]}
    response = await client.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    retry_after = float(response.headers.get("retry-after", 0))
    return response.status_code, time.perf_counter() - started, retry_after


async def _quiet(
    client: httpx.AsyncClient, key: str, n: int, want: int = 200, seen: Counter[int] | None = None
) -> list[float]:
    """Latencies of the ``want`` answers among ``n`` requests sent one at a time (all statuses: ``seen``)."""
    latencies = []
    for i in range(n):
        status, took, _ = await _call(client, key, i)
        if seen is not None:
            seen[status] += 1
        if status == want or (want == 429 and status == 503):
            latencies.append(took)
    return latencies


async def _flood(base_url: str, key: str, clients: int, until: float) -> tuple[Counter[int], list[float]]:
    statuses: Counter[int] = Counter()
    refusals: list[float] = []
    # A fresh connection per request: a kept-alive one waiting out a long Retry-After can be closed by the
    # server just as it is reused (an httpx ReadError that ended a run).
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=0)

    async def one(client: httpx.AsyncClient, worker: int) -> None:
        i = 0
        while time.monotonic() < until:
            try:
                status, took, retry_after = await _call(client, key, worker * 100_000 + i)
            except httpx.HTTPError:
                status, took, retry_after = 0, 0.0, 1.0
            statuses[status] += 1
            if status in (429, 503):
                refusals.append(took)
                await asyncio.sleep(retry_after)
            i += 1

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=300) as client:
        await asyncio.gather(*(one(client, w) for w in range(clients)))
    return statuses, refusals


def _ledger_counts(base_url: str, tenant: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    text = httpx.get(base_url + "/metrics").text
    for match in re.finditer(r"^maas_requests_total\{([^}]*)\} (\S+)$", text, re.MULTILINE):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match[1]))
        if labels.get("tenant") == tenant:
            counts[labels["status"]] += int(float(match[2]))
    return counts


def _gateway_refusal_times(home: Path, tenant: str) -> list[float]:
    """Seconds from each refused request's arrival to its refusal, as the gateway's ledger recorded them
    (its own time, apart from the load generator's queueing on the same cores)."""
    with contextlib.closing(sqlite3.connect(home / "maas.db")) as db:
        rows = db.execute(
            "SELECT duration_s FROM usage_records WHERE tenant = ? AND status = 'rejected'", (tenant,)
        ).fetchall()
    return [float(duration) for (duration,) in rows]


def _p(values: list[float], q: float) -> float | None:
    return round(percentile(values, q) * 1000, 1) if values else None


def run(quick: bool, results_dir: Path, command: str) -> dict[str, Any]:
    machine = machine_info()
    work = Path(tempfile.mkdtemp(prefix="maas-bench-overload-"))
    gateway = start_maas(REPO / "models.yaml", log_dir=work / "logs", home=work / "home")
    env = maas_env(gateway.home)
    quiet_key, flood_key = create_key(env, "quiet"), create_key(env, "flood")
    front = psutil.Process(gateway.server.pid)
    base = gateway.server.base_url
    try:

        async def measure() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=base, timeout=300) as client:
                await _quiet(client, quiet_key, 3)  # warm-up
                solo = await _quiet(client, quiet_key, QUIET_REQUESTS[quick])
                rss_before = front.memory_info().rss
                until = time.monotonic() + FLOOD_S[quick]
                flood = asyncio.create_task(_flood(base, flood_key, 10 * CAPACITY, until))
                await asyncio.sleep(5)  # the flood has filled the queue
                cpu = front.cpu_times()
                # Beside the quiet tenant: the flooding tenant's refusals as one client of its own sees
                # them, not slowed by the 640 others in the flooding process.
                probe_seen: Counter[int] = Counter()
                async with httpx.AsyncClient(base_url=base, timeout=300) as probe:
                    flooded, probed = await asyncio.gather(
                        _quiet(client, quiet_key, QUIET_REQUESTS[quick]),
                        _quiet(probe, flood_key, 4 * QUIET_REQUESTS[quick], want=429, seen=probe_seen),
                    )
                cpu_after = front.cpu_times()
                statuses, refusals = await flood
                statuses.update(probe_seen)
                rss_after = front.memory_info().rss
            return {
                "solo": solo,
                "flooded": flooded,
                "statuses": statuses,
                "refusals": refusals,
                "rss": (rss_before, rss_after),
                "probed": probed,
                "front_cpu_s": cpu_after.user + cpu_after.system - cpu.user - cpu.system,
            }

        m = asyncio.run(measure())
        ledger = _ledger_counts(base, "flood")
    finally:
        gateway.server.stop()
    refused_in_gateway = _gateway_refusal_times(gateway.home, "flood")  # every queued record is written
    statuses: Counter[int] = m["statuses"]
    solo_p95, flooded_p95 = _p(m["solo"], 95), _p(m["flooded"], 95)
    result = {
        "benchmark": "overload",
        "command": command,
        "quick": quick,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "versions": versions(),
        "workload": {
            "catalog": "models.yaml (16 in the replica + 48 queued)",
            "flood_clients": 10 * CAPACITY,
            "flood_s": FLOOD_S[quick],
            "max_tokens": BODY["max_tokens"],
        },
        "quiet": {
            "solo_p50_ms": _p(m["solo"], 50),
            "solo_p95_ms": solo_p95,
            "flooded_p50_ms": _p(m["flooded"], 50),
            "flooded_p95_ms": flooded_p95,
            "flooded_answered": len(m["flooded"]),
            "flooded_sent": QUIET_REQUESTS[quick],
            "p95_ratio_to_solo": round(flooded_p95 / solo_p95, 2) if solo_p95 and flooded_p95 else None,
        },
        "flood": {
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "refusal_p50_ms": _p(m["refusals"], 50),
            "refusal_p95_ms": _p(m["refusals"], 95),
            "refusal_max_ms": _p(m["refusals"], 100),
            "gateway_refusal_p50_ms": _p(refused_in_gateway, 50),
            "gateway_refusal_p95_ms": _p(refused_in_gateway, 95),
            "gateway_refusal_p99_ms": _p(refused_in_gateway, 99),
            "one_client_refusal_p50_ms": _p(m["probed"], 50),
            "one_client_refusal_p95_ms": _p(m["probed"], 95),
            "one_client_refusals": len(m["probed"]),
            "gateway_front_cpu_s_while_quiet_sent": round(m["front_cpu_s"], 1),
        },
        "gateway_rss_mib": {"before_flood": m["rss"][0] // 2**20, "after_flood": m["rss"][1] // 2**20},
        "ledger_matches_clients": {
            "ok": (ledger["ok"], statuses[200]),
            "rejected": (ledger["rejected"], statuses[429] + statuses[503]),
        },
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "overload-latest.json").write_text(json.dumps(result, indent=2))
    return result
