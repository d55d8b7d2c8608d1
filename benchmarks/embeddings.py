"""Embeddings per second through the gateway against the engine run directly (vLLM's own OpenAI server,
``--runner pooling``), on the default catalog's embedding model with the same engine settings and the same
requests (16 inputs each), at concurrency 1 and 16, in interleaved rounds; the target is >= 95 %.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from benchmarks.cells import run_loadgen
from benchmarks.loadgen import LoadSpec
from benchmarks.maas_server import MODELS_DIR, start_maas
from benchmarks.machine import machine_info, versions
from benchmarks.procs import REPO, VENV_PYTHON, Server, free_port, start_server

CATALOG = REPO / "models.yaml"
MODEL = "all-minilm-l6-v2"
INPUTS_PER_REQUEST = 16
CONCURRENCY = (1, 16)
WORDS = ["search", "engines", "rank", "documents", "by", "meaning", "not", "only", "words", "today"]


def inputs() -> list[str]:
    """Sixteen sentences of 8 to 38 words (10 to 40 tokens)."""
    return [
        " ".join(WORDS[(i + j) % len(WORDS)] for j in range(8 + 2 * i)) for i in range(INPUTS_PER_REQUEST)
    ]


def _entry() -> dict[str, Any]:
    data = yaml.safe_load(CATALOG.read_text())
    entry: dict[str, Any] = next(m for m in data["models"] if m["name"] == MODEL)
    return entry


def _folder() -> Path:
    from gateway.catalog.model_prep import prepare_model
    from gateway.catalog.schema import load_catalog

    model = load_catalog(CATALOG).find(MODEL)
    assert model is not None
    return Path(prepare_model(model, MODELS_DIR, lambda line: None))


def _embeds_ok(model: str, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    def probe(client: httpx.Client) -> bool:
        body = {"model": model, "input": ["warm up"]}
        return client.post("/v1/embeddings", json=body, headers=headers).status_code == 200

    return probe


@contextlib.contextmanager
def vllm_direct(folder: Path, engine: dict[str, Any], log_dir: Path) -> Iterator[Server]:
    port = free_port()
    command = [
        str(VENV_PYTHON),
        "-m",
        "vllm.entrypoints.launchers.api_server.entry",
        f"--model={folder}",
        "--runner=pooling",
        f"--served-model-name={MODEL}",
        f"--dtype={engine['dtype']}",
        f"--max-model-len={_entry()['context_length']}",
        f"--max-num-seqs={engine['max_num_seqs']}",
        "--disable-log-stats",
        "--disable-uvicorn-access-log",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    if engine.get("enforce_eager"):
        command.append("--enforce-eager")
    env = {
        **os.environ,
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_CPU_KVCACHE_SPACE": f"{engine.get('kv_cache_gib', 1):g}",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_USE_AOT_COMPILE": "0",
        "HF_HUB_OFFLINE": "1",
    }
    server = start_server("vllm-direct-embed", command, port=port, log_dir=log_dir, env=env)
    try:
        server.wait_ready(_embeds_ok(MODEL), timeout_s=300, interval_s=1.0)
        yield server
    finally:
        server.stop(grace_s=60)


@contextlib.contextmanager
def gateway(log_dir: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``maas serve`` with a catalog of the embedding model alone (the engine is all the machine runs)."""
    catalog = log_dir / "embeddings-catalog.yaml"
    catalog.write_text(yaml.safe_dump({"models": [_entry()]}))
    maas = start_maas(catalog, log_dir=log_dir)
    try:
        maas.server.wait_ready(_embeds_ok(MODEL, maas.key), timeout_s=120, interval_s=1.0)
        yield maas.server.base_url, maas.headers
    finally:
        maas.server.stop(grace_s=60)


def _cell(base_url: str, headers: dict[str, str], concurrency: int, quick: bool) -> dict[str, Any]:
    body = {"model": MODEL, "input": inputs(), "encoding_format": "float"}
    spec = LoadSpec(
        url=base_url + "/v1/embeddings",
        body=body,
        headers=headers,
        concurrency=concurrency,
        max_requests=100_000,
        duration_s=15 if quick else 60,
        warmup_s=3 if quick else 10,
    )
    result = run_loadgen(spec)
    return {
        "embeddings_per_s": round(result["rps"] * INPUTS_PER_REQUEST, 1),
        "requests": result["requests"],
        "errors": result["errors"],
        "error_samples": result["error_samples"],
        "latency_ms": result["latency_ms"],
        "gateway_overhead_header_ms": result["gateway_overhead_header_ms"],
        "machine_busy_cpu_s": result["machine_busy_cpu_s"],
    }


def run(quick: bool, results_dir: Path, command: str, rounds: int = 2) -> dict[str, Any]:
    """Both systems up at once (each idles while the other is measured); cells interleaved, the order of
    the two systems swapped every round, so a busy neighbour on the machine hits both alike."""
    machine = machine_info()  # before any load: the load average at the start, CPU features, fsync
    log_dir = results_dir / "logs"
    folder = _folder()
    engine = _entry()["deployments"][0]["engine"]
    cells: dict[str, dict[str, list[dict[str, Any]]]] = {"vllm-direct": {}, "maas": {}}
    with vllm_direct(folder, engine, log_dir) as server, gateway(log_dir) as (maas_url, maas_headers):
        targets = {"vllm-direct": (server.base_url, {}), "maas": (maas_url, maas_headers)}
        for round_ in range(rounds):
            order = ["vllm-direct", "maas"] if round_ % 2 == 0 else ["maas", "vllm-direct"]
            for concurrency in CONCURRENCY:
                for system in order:
                    url, headers = targets[system]
                    cell = _cell(url, headers, concurrency, quick)
                    cells[system].setdefault(f"c={concurrency}", []).append(cell)
    summary = {
        system: {
            cell: statistics.median(r["embeddings_per_s"] for r in runs) for cell, runs in by_cell.items()
        }
        for system, by_cell in cells.items()
    }
    ratio = {
        cell: round(summary["maas"][cell] / summary["vllm-direct"][cell], 3)
        for cell in summary["maas"]
        if summary["vllm-direct"][cell]
    }
    result = {
        "benchmark": "embeddings",
        "command": command,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "versions": versions(),
        "model": MODEL,
        "inputs_per_request": INPUTS_PER_REQUEST,
        "engine": engine,
        "rounds": rounds,
        "median_embeddings_per_s": summary,
        "gateway_over_direct": ratio,
        "cells": cells,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    name = "embeddings-quick-latest.json" if quick else "embeddings-latest.json"
    (results_dir / name).write_text(json.dumps(result, indent=2) + "\n")
    return result
