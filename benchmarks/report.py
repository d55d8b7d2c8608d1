"""Markdown tables from a result JSON (``python -m benchmarks table FILE``), for benchmarks/README.md."""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def _table(header: list[str], lines: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_fmt(v) for v in line) + " |" for line in lines]
    return out


def _preamble(result: Row) -> list[str]:
    m = result["machine"]
    v = result["versions"]
    shown = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    load = (
        f"load average at start {m['load_avg_1m_at_start']}"
        if "load_avg_1m_at_start" in m
        else f"load average at end {m.get('load_avg_1m_at_end')}"
    )
    host = [f"{m['cores']} cores", str(m["cpu_model"]), f"{m['memory_gib']} GiB"]
    if "cpu_features" in m:
        host.append(", ".join(m["cpu_features"]) or "no AVX2")
    if "wake_rtt_ms" in m:
        rtt = m["wake_rtt_ms"]
        host.append(f"wake round trip {rtt['any_cpu_p50']} ms ({rtt['one_cpu_p50']} ms on one CPU)")
    return [
        f"Command: `{result['command']}` ({result['date']}, {result['wall_s']:.0f} s wall)",
        "",
        f"Machine: {'; '.join(host)}; {load}. Versions: {shown}.",
        "",
    ]


def overhead_markdown(result: Row) -> str:
    lines = _preamble(result)
    for name, info in result["systems"].items():
        detail = info.get("description") if info.get("available") else f"**{info.get('reason')}**"
        lines.append(f"- `{name}`: {detail}")
    lines += [
        "",
        "Times in ms. TTFT: first chunk with content; gap: between content chunks. CPU ms/req: CPU of the "
        "system's own processes per request, net of their idle CPU (for `direct`, the mock's; for the "
        "gateway, front + Ray + replica with its fixed-rate engine, which stands in for the mock). "
        "Gateway header: the gateway's own `x-maas-gateway-overhead-ms`: all its time except the "
        "backend's own (the hop to a replica included).",
        "",
    ]
    for scenario, info in result["scenarios"].items():
        pace = f", one every {info['inter_token_ms']:g} ms" if info["inter_token_ms"] else ", all at once"
        lines += [f"**{scenario}** ({info['tokens']} tokens{pace}):", ""]
        header = ["system", "conc.", "req/s", "p50 ms", "p99 ms"]
        if info["stream"]:
            header += ["TTFT p50", "TTFT p99", "gap p50", "gap p99", "chunks/req"]
        header += ["CPU ms/req", "gateway header p50", "errors"]
        body = []
        for row in result["results"]:
            if row["scenario"] != scenario:
                continue
            line = [row["system"], row["concurrency"], row["rps"], row["p50_ms"], row["p99_ms"]]
            if info["stream"]:
                line += [
                    row["ttft_p50_ms"],
                    row["ttft_p99_ms"],
                    row["gap_p50_ms"],
                    row["gap_p99_ms"],
                    row["chunks_per_request"],
                ]
            line += [row["server_cpu_ms_per_request"], row["gateway_overhead_header_p50_ms"], row["errors"]]
            body.append(line)
        lines += [*_table(header, body), ""]
    lines += [
        "CPU ms per request by process role, net of each role's idle CPU (measured for "
        "a few seconds before the load); loadgen is the load generator's own; busy cores: the whole "
        "machine's; others' cores: everything else running meanwhile (the noise):",
        "",
    ]
    key = "cpu_ms_per_request_net_of_idle"
    roles = sorted({role for row in result["results"] for role in row[key]} - {"total"})
    body = [
        [r["system"], r["scenario"], r["concurrency"], *(r[key].get(k) for k in roles)]
        + [r["loadgen_cpu_ms_per_request"], r["machine_busy_cores"], r.get("other_load_cores")]
        for r in result["results"]
    ]
    header = ["system", "scenario", "conc.", *roles, "loadgen", "busy cores", "others' cores"]
    lines += [*_table(header, body), ""]
    lines += _targets(result)
    return "\n".join(lines)


def e2e_markdown(result: Row) -> str:
    lines = _preamble(result)
    for name, info in result["systems"].items():
        detail = info.get("description") if info.get("available") else f"**{info.get('reason')}**"
        lines.append(f"- `{name}`: {detail}")
    lines.append("")
    header = [
        "system",
        "conc.",
        "prompts",
        "out tok/s",
        "req/s",
        "p50 ms",
        "p99 ms",
        "TTFT p50",
        "TTFT p99",
        "TPOT p50",
        "ITL p50",
        "ITL p99",
        "path CPU s",
        "busy cores",
        "others' cores",
    ]
    body = [
        [
            r["system"],
            r["concurrency"],
            r["completed"],
            r["output_tok_s"],
            r["rps"],
            r["p50_ms"],
            r["p99_ms"],
            r["ttft_p50_ms"],
            r["ttft_p99_ms"],
            r["tpot_p50_ms"],
            r["itl_p50_ms"],
            r["itl_p99_ms"],
            r.get("path_cpu_s"),
            r.get("machine_busy_cores"),
            r.get("other_load_cores"),
        ]
        for r in result["results"]
    ]
    lines += [
        *_table(header, body),
        "",
        "Times in ms. path CPU s: CPU seconds of the processes between client and engine (HTTP front, "
        "Serve proxy, replica actors) during the run; busy cores: the whole machine's, out of "
        f"{result['machine']['cores']}; others' cores: all but the server (the benchmark client and "
        "other users' work on this shared machine)."
        + (f" Each cell: the median of {result['rounds']} rounds." if result.get("rounds", 1) > 1 else ""),
        "",
    ]
    ratios = result.get("round_ratios") or []
    for concurrency in sorted({r.get("concurrency", 16) for r in ratios}):
        per_round = ", ".join(
            f"round {r['round']} {r['system']} {r['ratio']}"
            for r in ratios
            if r.get("concurrency", 16) == concurrency
        )
        lines.append(f"c={concurrency} output tokens/s over direct vLLM's in the same round: {per_round}.")
    if ratios:
        lines.append("")
    lines += _targets(result)
    return "\n".join(lines)


def _targets(result: Row) -> list[str]:
    body = [[t["target"], t["system"], t["measured"], t["limit"], t["met"]] for t in result["targets"]]
    return ["Targets:", "", *_table(["target", "system", "measured", "limit", "met"], body), ""]


def markdown(result: Row) -> str:
    return overhead_markdown(result) if result["benchmark"] == "overhead" else e2e_markdown(result)
