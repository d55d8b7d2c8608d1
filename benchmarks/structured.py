"""What a structured request costs over a plain one (issue 15): non-streamed chat completions to SmolLM2,
**plain** and **structured** (the same prompts with a strict ``json_schema`` response format), at
concurrency 1 and 16, through the gateway and through vLLM's own OpenAI server on the same model folder
and engine settings, side by side.

Both systems are up at once (each idles while the other is measured); cells run in interleaved rounds,
the order of the systems and of the two kinds swapped every round, so a busy neighbour on this shared
machine hits every cell alike. The client is a closed loop (aiohttp, keep-alive) in this process; it keeps
every answer's ``finish_reason`` and text, and checks that each structured answer that stopped by itself
parses as JSON and matches the schema (failures are counted and reported, never fatal).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import yaml

from benchmarks import e2e_systems
from benchmarks.cpu import machine_busy_seconds
from benchmarks.e2e_systems import (
    CATALOG,
    SERVED_NAME,
    Endpoint,
    EngineSettings,
    _chat_ok,
    engine_settings,
)
from benchmarks.maas_server import MODELS_DIR, process_roles, start_maas
from benchmarks.machine import machine_info, versions
from benchmarks.stats import percentile, summary_ms
from benchmarks.structured_report import CONCURRENCY, KINDS, SYSTEMS, summarise

logger = logging.getLogger(__name__)

MAX_TOKENS = 64  # a schema-conforming answer takes ~31-45 tokens of SmolLM2's: 32 cut every one short
REQUEST_TIMEOUT_S = 120.0
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 16},
        "mood": {"type": "string", "enum": ["happy", "calm", "curious", "tired"]},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "hobbies": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 12},
            "minItems": 1,
            "maxItems": 2,
        },
    },
    "required": ["name", "mood", "age", "hobbies"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "person", "strict": True, "schema": SCHEMA},
}
SUBJECTS = [
    ("baker", "Lyon"),
    ("sailor", "Lisbon"),
    ("teacher", "Osaka"),
    ("painter", "Oaxaca"),
    ("nurse", "Dublin"),
    ("gardener", "Kyoto"),
    ("pilot", "Nairobi"),
    ("chemist", "Oslo"),
]


def prompts() -> list[str]:
    """Eight short prompts (~20 tokens each), the same for both kinds."""
    return [
        f"Describe a fictional {job} from {city}: name, mood, age and two hobbies." for job, city in SUBJECTS
    ]


def request_body(kind: str, prompt: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": SERVED_NAME,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
    }
    if kind == "structured":
        body["response_format"] = RESPONSE_FORMAT
    return body


# -- answers and their checks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    latency_s: float
    finish_reason: str | None
    completion_tokens: int | None
    content: str | None


_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def check_structured(content: str | None) -> str | None:
    """None when ``content`` is a JSON document matching ``SCHEMA``; else ``invalid_json`` or
    ``schema_mismatch``."""
    try:
        document = json.loads(content or "")
    except ValueError:
        return "invalid_json"
    return None if _VALIDATOR.is_valid(document) else "schema_mismatch"


def summarise_cell(
    answers: Sequence[Answer], errors: Sequence[str], wall_s: float, kind: str
) -> dict[str, Any]:
    """One cell's figures: requests/s, latency percentiles, finish reasons, output tokens, and for
    structured answers that stopped by themselves how many did not parse or did not match the schema."""
    done = len(answers)
    finish: dict[str, int] = {}
    for answer in answers:
        reason = answer.finish_reason or "none"
        finish[reason] = finish.get(reason, 0) + 1
    tokens = [a.completion_tokens for a in answers if a.completion_tokens]
    per_token = [a.latency_s / a.completion_tokens for a in answers if a.completion_tokens]
    cell: dict[str, Any] = {
        "requests": done,
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:3],
        "wall_s": round(wall_s, 3),
        "rps": round(done / wall_s, 3) if wall_s > 0 else 0.0,
        "latency_ms": summary_ms([a.latency_s for a in answers]),
        "latencies_ms": [round(a.latency_s * 1000, 1) for a in answers],
        "ms_per_output_token_p50": round(percentile(per_token, 50) * 1000, 2) if per_token else None,
        "completion_tokens_mean": round(sum(tokens) / len(tokens), 1) if tokens else None,
        "finish_reasons": finish,
    }
    if kind == "structured":
        checked = [a for a in answers if a.finish_reason == "stop"]
        failures = [(check_structured(a.content), a.content) for a in checked]
        bad = [(why, text) for why, text in failures if why is not None]
        cell["checked"] = len(checked)
        cell["invalid_json"] = sum(1 for why, _ in bad if why == "invalid_json")
        cell["schema_mismatch"] = sum(1 for why, _ in bad if why == "schema_mismatch")
        cell["invalid_samples"] = [f"{why}: {(text or '')[:200]}" for why, text in bad[:3]]
        cell["answer_samples"] = sorted({(a.content or "")[:200] for a in answers})[:3]
    return cell


# -- the closed loop --------------------------------------------------------------------------------------


async def _one(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Answer:
    started = time.perf_counter()
    async with session.post(url, json=body) as response:
        text = await response.text()
        latency = time.perf_counter() - started
    if response.status != 200:
        raise ValueError(f"HTTP {response.status}: {text[:200]}")
    data = json.loads(text)
    choice = (data.get("choices") or [None])[0]
    if not choice:
        raise ValueError(f"no choices: {text[:200]}")
    usage = data.get("usage") or {}
    return Answer(
        latency_s=latency,
        finish_reason=choice.get("finish_reason"),
        completion_tokens=usage.get("completion_tokens"),
        content=(choice.get("message") or {}).get("content"),
    )


async def closed_loop(
    url: str,
    headers: dict[str, str],
    bodies: Sequence[dict[str, Any]],
    concurrency: int,
    duration_s: float,
    warmup_s: float = 0.0,
    max_requests: int | None = None,
) -> tuple[list[Answer], list[str], float]:
    """``concurrency`` clients, each sending the next of ``bodies`` (round robin) as soon as its last answer
    came, for ``warmup_s`` (not kept) and then for ``duration_s`` or ``max_requests`` sent, whichever comes
    first (requests in flight at the end finish and count). Returns the answers, the errors and the
    measured window's wall seconds."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        next_body = 0

        async def phase(seconds: float, limit: int | None) -> tuple[list[Answer], list[str], float]:
            nonlocal next_body
            answers: list[Answer] = []
            errors: list[str] = []
            started = time.perf_counter()
            deadline = started + seconds
            sent = 0

            async def client() -> None:
                nonlocal next_body, sent
                while time.perf_counter() < deadline and (limit is None or sent < limit):
                    sent += 1
                    body = bodies[next_body % len(bodies)]
                    next_body += 1
                    try:
                        answers.append(await _one(session, url, body))
                    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                        errors.append(f"{type(exc).__name__}: {exc}")

            await asyncio.gather(*(client() for _ in range(concurrency)))
            return answers, errors, time.perf_counter() - started

        if warmup_s > 0:
            await phase(warmup_s, None)
        return await phase(duration_s, max_requests)


def _run_async(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _headers(endpoint: Endpoint) -> dict[str, str]:
    return {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}


def _cell(endpoint: Endpoint, kind: str, concurrency: int, quick: bool) -> dict[str, Any]:
    bodies = [request_body(kind, p) for p in prompts()]
    busy_before = machine_busy_seconds()
    answers, errors, wall = _run_async(
        closed_loop(
            endpoint.base_url + "/v1/chat/completions",
            _headers(endpoint),
            bodies,
            concurrency,
            duration_s=12 if quick else 45,
            warmup_s=0 if quick else 5,
        )
    )
    cell = summarise_cell(answers, errors, wall, kind)
    cell["machine_busy_cores"] = round((machine_busy_seconds() - busy_before) / wall, 2) if wall else None
    return cell


def _warm_up(endpoint: Endpoint) -> float:
    """One answer of each kind, before any cell: vLLM builds the grammar (and, on its own server, xgrammar's
    view of the vocabulary) in the first structured request."""
    started = time.perf_counter()
    for kind in KINDS:
        body = request_body(kind, prompts()[0])
        answers, errors, _ = _run_async(
            closed_loop(
                endpoint.base_url + "/v1/chat/completions", _headers(endpoint), [body], 1, 300, max_requests=1
            )
        )
        if errors or not answers:
            raise RuntimeError(f"{endpoint.system}: the {kind} warm-up request failed: {errors}")
    return round(time.perf_counter() - started, 1)


# -- the systems ------------------------------------------------------------------------------------------


def _settings() -> EngineSettings:
    """The SmolLM2 folder ``maas serve`` prepares in ``.cache/models`` (converted here if missing, as the
    e2e tests do), with the catalog's engine settings."""
    from gateway.catalog.model_prep import PreparationFailed, prepare_model
    from gateway.catalog.schema import load_catalog

    model = load_catalog(CATALOG).models[0]
    try:
        prepare_model(model, MODELS_DIR, logger.info)
        return engine_settings()
    except (PreparationFailed, FileNotFoundError) as exc:
        raise SystemExit(
            f"the SmolLM2 folder is missing under {MODELS_DIR} and could not be prepared ({exc}); "
            "run `./dev.sh serve` once (it converts the model), then rerun this benchmark"
        ) from None


def structured_outputs_config() -> dict[str, Any]:
    """What the gateway's vLLM backend sets (xgrammar; JSON without whitespace when the catalog's
    ``compact_json`` is on), for vLLM's own server to enforce the same grammar."""
    from backends.vllm_backend import VLLMOptions
    from gateway.catalog.schema import load_catalog

    options = VLLMOptions.model_validate(load_catalog(CATALOG).models[0].deployments[0].engine)
    return {"backend": "xgrammar", "disable_any_whitespace": options.compact_json}


@contextlib.contextmanager
def vllm_direct(settings: EngineSettings, log_dir: Path) -> Iterator[Endpoint]:
    """``e2e_systems.vllm_direct`` with the gateway's structured-outputs settings."""
    config = json.dumps(structured_outputs_config())
    with e2e_systems.vllm_direct(
        settings,
        log_dir,
        extra_args=[f"--structured-outputs-config={config}"],
        description=f"vLLM's own OpenAI server, --structured-outputs-config {config}",
    ) as endpoint:
        yield endpoint


@contextlib.contextmanager
def gateway(log_dir: Path) -> Iterator[Endpoint]:
    """``maas serve`` with ``models.yaml``'s SmolLM2 entry alone (the other models' engines would idle
    beside it and slow the start)."""
    catalog = yaml.safe_load(CATALOG.read_text())
    catalog["models"] = catalog["models"][:1]
    path = log_dir / "structured-catalog.yaml"
    log_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    maas = start_maas(path, log_dir=log_dir, ready_timeout_s=300)
    try:
        seconds = maas.server.wait_ready(_chat_ok(SERVED_NAME, maas.key), timeout_s=120)
        yield Endpoint(
            system="maas",
            description="our gateway: `maas serve` on models.yaml's SmolLM2 entry (replica → vLLM)",
            base_url=maas.server.base_url,
            model=SERVED_NAME,
            api_key=maas.key,
            cpu_pids=lambda: process_roles(maas.server.pid),
            extra={"first_answer_after_health_s": round(seconds, 1)},
        )
    finally:
        maas.server.stop(grace_s=90)


# -- the summary ------------------------------------------------------------------------------------------


def schedule(rounds: int) -> list[tuple[int, int, str, str]]:
    """``(round, concurrency, system, kind)`` in run order: both concurrencies every round, both systems
    and both kinds at each, the order of the systems and of the kinds swapped every other round."""
    order: list[tuple[int, int, str, str]] = []
    for round_ in range(1, rounds + 1):
        systems = SYSTEMS if round_ % 2 else SYSTEMS[::-1]
        kinds = KINDS if round_ % 2 else KINDS[::-1]
        order += [(round_, c, s, k) for c in CONCURRENCY for s in systems for k in kinds]
    return order


def run(quick: bool, results_dir: Path, command: str, rounds: int = 2) -> dict[str, Any]:
    started = time.monotonic()
    machine = machine_info()  # before any load: the load average at the start
    log_dir = results_dir / "logs"
    settings = _settings()
    rows: list[dict[str, Any]] = []
    systems: dict[str, Any] = {}
    with vllm_direct(settings, log_dir) as direct, gateway(log_dir) as ours:
        endpoints = {"vllm-direct": direct, "maas": ours}
        for name, endpoint in endpoints.items():
            systems[name] = {
                "description": endpoint.description,
                **endpoint.extra,
                "warmup_s": _warm_up(endpoint),
            }
        for round_, concurrency, system, kind in schedule(rounds):
            cell = _cell(endpoints[system], kind, concurrency, quick)
            logger.info(
                "round %d %s c=%d %s: %d requests, p50 %s ms, %d errors",
                *(round_, system, concurrency, kind),
                *(cell["requests"], cell["latency_ms"]["p50"], cell["errors"]),
            )
            rows.append({"system": system, "concurrency": concurrency, "kind": kind, "round": round_, **cell})
    result = {
        "benchmark": "structured",
        "command": command,
        "quick": quick,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "versions": versions(),
        "model": SERVED_NAME,
        "engine": {**settings.engine_kwargs, **settings.env, "weights": str(settings.weights)},
        "structured_outputs": structured_outputs_config(),
        "systems": systems,
        "workload": {
            "prompts": prompts(),
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "response_format": RESPONSE_FORMAT,
            "window_s": 12 if quick else 45,
            "warmup_s_per_cell": 0 if quick else 5,
            "client": "closed loop in the benchmark process, aiohttp keep-alive, non-streamed",
        },
        "rounds": rounds,
        "summary": summarise(rows),
        "cells": rows,
        "logs": str(log_dir),
        "wall_s": round(time.monotonic() - started, 1),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "structured-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
