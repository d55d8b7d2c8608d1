"""Overhead benchmark: what the gateway adds per request and per streamed token, next to the peers.

    python -m benchmarks overhead [--quick]

The same fast mock work is reached four ways, one after another in the same run: the mock upstream
directly; our gateway through the Ray Serve replica path on a fixed-rate engine (same tokens, same pace);
our gateway through the ``openai_upstream`` backend in front of the mock (when that backend exists); and
LiteLLM's proxy in front of the mock. A load generator in its own process measures each at concurrency
1, 8 and 32, non-stream (16 tokens at once) and stream (32 tokens, one every 10 ms). In the alternating
c=1 rounds two references in front of the mock are measured too, and named beside the gateway's own
figure: a byte-copying relay (``benchmarks.hop_relay``), the floor of one more hop on the host, and a bare
ASGI proxy on the gateway's server stack (``benchmarks.asgi_floor``), the floor of a Python gateway.
"""

from __future__ import annotations

import json
import logging
import string
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from backends.registry import available_backends
from benchmarks.cells import Window, idle_cores, per_request_ms, run_loadgen
from benchmarks.fixed_rate_engine import FixedRateOptions
from benchmarks.litellm_proxy import litellm_version
from benchmarks.loadgen import LoadSpec
from benchmarks.machine import machine_info, versions
from benchmarks.prom import GATEWAY_OVERHEAD, mean_ms_between, scrape_histogram
from benchmarks.subjects import (
    Subject,
    asgi_floor_subject,
    direct_subject,
    hop_relay_subject,
    litellm_subject,
    maas_subjects,
    mock_upstream,
)
from benchmarks.targets import overhead_targets
from gateway.catalog.schema import CatalogError, parse_catalog

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CATALOG = HERE / "catalogs" / "overhead.yaml"
OPENAI_UPSTREAM_CATALOG = HERE / "catalogs" / "overhead-openai-upstream.yaml"
CONCURRENCY = (1, 8, 32)
QUICK = Window(duration_s=5, warmup_s=1, max_requests=50_000)
FULL = Window(duration_s=20, warmup_s=3, max_requests=500_000)
IDLE_S = 3.0
PAIRED_WINDOW = Window(duration_s=2, warmup_s=0.5, max_requests=50_000)
PAIRED_ROUNDS = {True: 5, False: 9}
"""Alternating rounds of non-stream c=1 cells, direct then each gateway path, back to back (quick, full)."""
PROMPT = [{"role": "user", "content": "Say something."}]


@dataclass(frozen=True)
class Scenario:
    name: str
    tokens: int
    stream: bool


# The benchmark catalog's engine paces a 32-token answer at 10 ms a token and sends 16 tokens at once.
SCENARIOS = (Scenario("nonstream", 16, stream=False), Scenario("stream", 32, stream=True))

# Gateway paths: system name → model name in the benchmark catalog. The openai_upstream path joins when
# the registry has that backend and its catalog entry validates (see `openai_upstream_models`).
REPLICA_PATH = ("maas-replica", "bench")
OPENAI_UPSTREAM_PATH = ("maas-openai-upstream", "bench-upstream")
TWO_POOLS_PATH = ("maas-two-pools", "bench-pools")


def _render(template: Path, **values: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(string.Template(template.read_text()).substitute(values))
    return data


def openai_upstream_models(
    weights: Path, upstream: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """Catalog entries (models, pools) for the openai_upstream paths, or why they cannot run."""
    if "openai_upstream" not in available_backends():
        return [], [], "not available yet: no `openai_upstream` backend in the registry"
    data = _render(OPENAI_UPSTREAM_CATALOG, WEIGHTS_DIR=str(weights), UPSTREAM=upstream)
    try:
        parse_catalog(data, str(OPENAI_UPSTREAM_CATALOG))
    except CatalogError as exc:
        return [], [], f"its catalog entry does not validate: {exc}"
    return list(data["models"]), list(data.get("pools", [])), None


def bench_catalog(work: Path) -> tuple[Path, dict[str, Any], FixedRateOptions]:
    """The benchmark catalog rendered for a fresh weights folder under ``work``, and its engine options."""
    weights = work / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    (weights / "config.json").write_text(json.dumps({"model_type": "fixed-rate-benchmark-engine"}))
    catalog = _render(CATALOG, WEIGHTS_DIR=str(weights))
    parse_catalog(catalog, str(CATALOG))
    engine = FixedRateOptions.model_validate(catalog["models"][0]["deployments"][0]["engine"])
    return weights, catalog, engine


def write_catalog(
    work: Path, models: list[dict[str, Any]], pools: list[dict[str, Any]] | None = None
) -> Path:
    path = work / "catalog.yaml"
    path.write_text(yaml.safe_dump({"models": models, "pools": pools or []}))
    return path


def request_body(model: str, scenario: Scenario) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": PROMPT,
        "max_tokens": scenario.tokens,
        "stream": scenario.stream,
    }
    if scenario.stream:
        body["stream_options"] = {"include_usage": True}
    return body


def measure_cell(
    subject: Subject, scenario: Scenario, concurrency: int, window: Window, idle: dict[str, float]
) -> dict[str, Any]:
    spec = LoadSpec(
        url=f"{subject.base_url}/v1/chat/completions",
        body=request_body(subject.model, scenario),
        headers=subject.headers,
        concurrency=concurrency,
        max_requests=window.max_requests,
        duration_s=window.duration_s,
        warmup_s=window.warmup_s,
        timeout_s=60,
        cpu_pids=subject.cpu_pids(),
    )
    before = (
        scrape_histogram(subject.base_url, GATEWAY_OVERHEAD, subject.headers) if subject.metrics else None
    )
    raw = run_loadgen(spec)
    after = scrape_histogram(subject.base_url, GATEWAY_OVERHEAD, subject.headers) if subject.metrics else None
    done = int(raw["requests"])
    header = raw["gateway_overhead_header_ms"]
    cpu = per_request_ms(raw["cpu_s"], done, raw["wall_s"])
    net = per_request_ms(raw["cpu_s"], done, raw["wall_s"], idle)
    row = {
        "system": subject.system,
        "scenario": scenario.name,
        "stream": scenario.stream,
        "concurrency": concurrency,
        "requests": done,
        "errors": raw["errors"],
        "rps": raw["rps"],
        "p50_ms": raw["latency_ms"]["p50"],
        "p99_ms": raw["latency_ms"]["p99"],
        "ttft_p50_ms": raw["ttft_ms"]["p50"],
        "ttft_p99_ms": raw["ttft_ms"]["p99"],
        "gap_p50_ms": raw["gap_ms"]["p50"],
        "gap_p99_ms": raw["gap_ms"]["p99"],
        "chunks_per_request": raw["chunks_per_request"],
        "gateway_overhead_header_p50_ms": header["p50"] if header else None,
        "gateway_overhead_metric_mean_ms": mean_ms_between(before, after),
        "cpu_ms_per_request": cpu,
        "cpu_ms_per_request_net_of_idle": net,
        "server_cpu_ms_per_request": _server_cpu(net),
        "loadgen_cpu_ms_per_request": round(raw["loadgen_cpu_s"] / done * 1000, 3) if done else None,
        "machine_busy_cores": round(raw["machine_busy_cpu_s"] / raw["wall_s"], 2) if raw["wall_s"] else None,
        # CPU of everything else on the machine meanwhile (other users' work): the noise in this cell.
        "other_load_cores": round(
            max(0.0, raw["machine_busy_cpu_s"] - sum(raw["cpu_s"].values()) - raw["loadgen_cpu_s"])
            / raw["wall_s"],
            2,
        )
        if raw["wall_s"]
        else None,
    }
    if raw["error_samples"]:
        row["error_samples"] = raw["error_samples"]
    logger.info(
        "%s %s c=%d: %.1f req/s p50=%s ms p99=%s ms ttft_p50=%s ms errors=%d",
        subject.system,
        scenario.name,
        concurrency,
        row["rps"],
        row["p50_ms"],
        row["p99_ms"],
        row["ttft_p50_ms"],
        row["errors"],
    )
    return row


def measure_subject(
    subject: Subject, concurrencies: tuple[int, ...], window: Window, idle_s: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every scenario at every concurrency on ``subject``, after measuring its idle CPU: what it is, and
    its rows."""
    idle = idle_cores(subject.cpu_pids(), idle_s)
    info = {"available": True, "description": subject.description, "idle_cores_by_role": idle}
    rows = [measure_cell(subject, s, c, window, idle) for s in SCENARIOS for c in concurrencies]
    return info, rows


def paired_c1(direct: Subject, subjects: list[Subject], rounds: int) -> list[dict[str, Any]]:
    """Non-stream c=1 p50 of each gateway path minus direct's in the cell just before it, over alternating
    rounds. The main cells measure direct minutes before the gateway, so the machine's drift between them
    (0.2 ms and more on these hosts) lands in the difference; here each difference is taken seconds apart,
    and the median over rounds is what the c=1 targets use."""
    scenario = SCENARIOS[0]
    rows: list[dict[str, Any]] = []
    for round_no in range(1, rounds + 1):
        for subject in subjects:
            base = measure_cell(direct, scenario, 1, PAIRED_WINDOW, {})
            path = measure_cell(subject, scenario, 1, PAIRED_WINDOW, {})
            rows.append(
                {
                    "round": round_no,
                    "system": subject.system,
                    "direct_p50_ms": base["p50_ms"],
                    "p50_ms": path["p50_ms"],
                    "added_p50_ms": _added(path["p50_ms"], base["p50_ms"]),
                    "gateway_overhead_header_p50_ms": path["gateway_overhead_header_p50_ms"],
                }
            )
    return rows


def _added(path: float | None, base: float | None) -> float | None:
    return None if path is None or base is None else round(path - base, 3)


def _server_cpu(cpu: dict[str, float | None]) -> float | None:
    """CPU per request of the system itself, net of idle: every role but the upstream mock (whose work the
    fixed-rate engine does instead on the replica path), or the mock's when it is the system."""
    parts = [v for role, v in cpu.items() if role not in ("total", "upstream") and v is not None]
    return round(sum(parts), 3) if parts else cpu.get("upstream")


def run(quick: bool, results_dir: Path, command: str) -> dict[str, Any]:
    started = time.monotonic()
    machine = machine_info()  # before any load: it records the load average at the start
    window = QUICK if quick else FULL
    work = Path(tempfile.mkdtemp(prefix="maas-bench-overhead-"))
    logs = work / "logs"
    weights, catalog, engine = bench_catalog(work)
    systems: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []

    def measure(subject: Subject) -> None:
        systems[subject.system], measured = measure_subject(subject, CONCURRENCY, window, IDLE_S)
        rows.extend(measured)

    paired: list[dict[str, Any]] = []
    with mock_upstream(engine.model_dump(), logs) as mock:
        measure(direct_subject(mock))

        upstream_models, pools, unavailable = openai_upstream_models(weights, f"{mock.base_url}/v1")
        paths = dict([REPLICA_PATH])
        if unavailable is None:
            paths.update([OPENAI_UPSTREAM_PATH, TWO_POOLS_PATH])
        else:
            for system, _ in (OPENAI_UPSTREAM_PATH, TWO_POOLS_PATH):
                systems[system] = {"available": False, "reason": unavailable}
        catalog_path = write_catalog(work, catalog["models"] + upstream_models, pools)
        with (
            maas_subjects(catalog_path, paths, mock, logs) as subjects,
            hop_relay_subject(mock, logs) as hop,
            asgi_floor_subject(mock, logs) as floor,
        ):
            for subject in subjects:
                measure(subject)
            for reference in (hop, floor):
                systems[reference.system] = {
                    "available": True,
                    "description": reference.description,
                    "paired_c1_only": True,
                }
            paired = paired_c1(direct_subject(mock), [hop, floor, *subjects], PAIRED_ROUNDS[quick])

        with litellm_subject(mock, logs) as subject:
            measure(subject)

    result: dict[str, Any] = {
        "benchmark": "overhead",
        "command": command,
        "quick": quick,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "versions": versions({"litellm": litellm_version()}),
        "window": {"duration_s": window.duration_s, "warmup_s": window.warmup_s},
        "scenarios": {
            s.name: {
                "stream": s.stream,
                "tokens": s.tokens,
                "inter_token_ms": engine.inter_token_s(s.tokens) * 1000,
            }
            for s in SCENARIOS
        },
        "systems": systems,
        "results": rows,
        "logs": str(logs),
    }
    fsync = (machine.get("ledger_fsync_ms") or {}).get("p50")
    disk_fsync = (machine.get("fsync_4k_ms") or {}).get("p50")
    result["paired_c1"] = {
        "window": {"duration_s": PAIRED_WINDOW.duration_s, "warmup_s": PAIRED_WINDOW.warmup_s},
        "rounds": paired,
    }
    result["targets"] = overhead_targets(rows, SCENARIOS[1].tokens, fsync, paired, disk_fsync)
    result["wall_s"] = round(time.monotonic() - started, 1)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "overhead-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
