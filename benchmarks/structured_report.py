"""The structured-output benchmark's summary and Markdown tables (``benchmarks.structured`` measures)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from benchmarks.stats import summary_ms

SYSTEMS = ("vllm-direct", "maas")
CONCURRENCY = (1, 16)
KINDS = ("plain", "structured")


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator and denominator else None


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per system, concurrency and kind over all rounds: latency percentiles of every request of every
    round together, the median requests/s of the rounds, the sums of errors and failed checks; then the
    ratio structured / plain per system and the gateway over vLLM's own server per kind."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["system"], row["concurrency"], row["kind"]), []).append(row)
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for (system, concurrency, kind), members in groups.items():
        latencies = [ms / 1000 for m in members for ms in m["latencies_ms"]]
        tokens = [m["completion_tokens_mean"] for m in members if m["completion_tokens_mean"]]
        per_token = [m["ms_per_output_token_p50"] for m in members if m["ms_per_output_token_p50"]]
        cell: dict[str, Any] = {
            "rounds": len(members),
            "requests": sum(m["requests"] for m in members),
            "errors": sum(m["errors"] for m in members),
            "rps": round(statistics.median(m["rps"] for m in members), 3),
            "p50_ms": summary_ms(latencies)["p50"],
            "p99_ms": summary_ms(latencies)["p99"],
            "ms_per_output_token_p50": round(statistics.median(per_token), 2) if per_token else None,
            "completion_tokens_mean": round(statistics.mean(tokens), 1) if tokens else None,
            "stopped": sum(m["finish_reasons"].get("stop", 0) for m in members),
        }
        if kind == "structured":
            for field in ("checked", "invalid_json", "schema_mismatch"):
                cell[field] = sum(m.get(field, 0) for m in members)
        cells.setdefault(system, {}).setdefault(f"c={concurrency}", {})[kind] = cell
    over_plain = {
        system: {
            c: {
                metric: _ratio(kinds.get("structured", {}).get(metric), kinds.get("plain", {}).get(metric))
                for metric in ("p50_ms", "p99_ms", "rps", "ms_per_output_token_p50")
            }
            for c, kinds in by_c.items()
        }
        for system, by_c in cells.items()
    }
    gateway_over_direct: dict[str, dict[str, float | None]] = {}
    for c, direct in cells.get("vllm-direct", {}).items():
        ours = cells.get("maas", {}).get(c, {})
        gateway_over_direct[c] = {
            f"{kind}_{metric}": _ratio(ours.get(kind, {}).get(metric), direct.get(kind, {}).get(metric))
            for kind in KINDS
            for metric in ("p50_ms", "p99_ms")
        }
    return {"cells": cells, "structured_over_plain": over_plain, "gateway_over_direct": gateway_over_direct}


def _n(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        digits = 0 if abs(value) >= 1000 else 1 if abs(value) >= 10 else 2
        return f"{value:.{digits}f}"
    return str(value)


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    shown = ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v)
    lines = [
        f"Command: `{result['command']}` ({result['date']}, {result['wall_s']:.0f} s wall, "
        f"{result['rounds']} rounds)",
        "",
        f"Machine: {m['cores']} cores, {m['cpu_model']} ({', '.join(m['cpu_features']) or 'no AVX2'}), "
        f"{m['memory_gib']} GiB, fsync 4 KiB p50 {m['fsync_4k_ms']['p50']} ms; load average at start "
        f"{m['load_avg_1m_at_start']}. Versions: {shown}.",
        "",
        f"Non-streamed chat completions, max_tokens {result['workload']['max_tokens']}, temperature 0; "
        "latency in ms over every request of every round, req/s the median of the rounds; tok: mean output "
        "tokens per answer; ms/tok: p50 of latency / output tokens; stop: answers with finish_reason stop; "
        "bad JSON: structured answers that stopped but do not parse or do not match the schema.",
        "",
        "| system | conc. | kind | req/s | p50 ms | p99 ms | tok | ms/tok | stop / requests | bad JSON "
        "| errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary = result["summary"]
    for system, by_c in summary["cells"].items():
        for c, kinds in by_c.items():
            for kind, cell in kinds.items():
                bad = (
                    f"{cell['invalid_json']} + {cell['schema_mismatch']} of {cell['checked']}"
                    if kind == "structured"
                    else "-"
                )
                figures = [cell[k] for k in ("rps", "p50_ms", "p99_ms", "completion_tokens_mean")]
                lines.append(
                    f"| {system} | {c[2:]} | {kind} | {' | '.join(_n(v) for v in figures)} | "
                    f"{_n(cell['ms_per_output_token_p50'])} | {cell['stopped']} / {cell['requests']} | {bad} "
                    f"| {cell['errors']} |"
                )
    lines += [
        "",
        "Structured over plain (same system, same concurrency), and the gateway over vLLM's own server:",
        "",
        "| conc. | vLLM structured/plain p50 | gateway structured/plain p50 | vLLM s/p ms/tok | "
        "gateway s/p ms/tok | gateway/vLLM structured p50 | gateway/vLLM plain p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for c, side in summary["gateway_over_direct"].items():
        direct = summary["structured_over_plain"].get("vllm-direct", {}).get(c, {})
        ours = summary["structured_over_plain"].get("maas", {}).get(c, {})
        lines.append(
            f"| {c[2:]} | {_n(direct.get('p50_ms'))} | {_n(ours.get('p50_ms'))} | "
            f"{_n(direct.get('ms_per_output_token_p50'))} | {_n(ours.get('ms_per_output_token_p50'))} | "
            f"**{_n(side['structured_p50_ms'])}** | {_n(side['plain_p50_ms'])} |"
        )
    return "\n".join(lines) + "\n"


# -- the run ----------------------------------------------------------------------------------------------
