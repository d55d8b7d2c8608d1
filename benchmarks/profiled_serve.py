"""``maas serve`` under yappi (CPU clock, every thread), switched on and off by signals.

    .cache/bench-venvs/profiler/bin/python -m benchmarks.profiled_serve OUT_PREFIX [maas serve options]

SIGUSR1 clears and starts the profiler; SIGUSR2 stops it and writes ``OUT_PREFIX.pstat`` (pstats format)
and ``OUT_PREFIX.txt`` (the functions with the most CPU, by own time and by total time). Only the
gateway's front process is profiled, start-up excluded; run by ``python -m benchmarks profile``.
"""

from __future__ import annotations

import io
import signal
import sys
from pathlib import Path
from types import FrameType

TOP = 40


def _report(stats: object, out: Path) -> None:
    import yappi

    assert isinstance(stats, yappi.YFuncStats)
    lines = []
    for key, title in (("tsub", "own CPU time"), ("ttot", "total CPU time (with callees)")):
        stats.sort(key, "desc")
        total = sum(s.tsub for s in stats)
        lines.append(f"## top {TOP} functions by {title}; all functions' own time: {total:.3f} s\n")
        lines.append(f"{'calls':>9} {'own s':>8} {'total s':>8}  function")
        for s in list(stats)[:TOP]:
            lines.append(f"{s.ncall:>9} {s.tsub:>8.3f} {s.ttot:>8.3f}  {s.module}:{s.lineno} {s.name}")
        lines.append("")
    threads = io.StringIO()
    yappi.get_thread_stats().print_all(out=threads)
    lines += ["## threads (CPU seconds)", threads.getvalue()]
    out.write_text("\n".join(lines))


def main(argv: list[str]) -> int:
    import yappi

    prefix = Path(argv[0])
    yappi.set_clock_type("cpu")

    def start(signum: int, frame: FrameType | None) -> None:
        yappi.clear_stats()
        yappi.start(builtins=False, profile_threads=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        yappi.stop()
        stats = yappi.get_func_stats()
        stats.save(str(prefix.with_suffix(".pstat")), type="pstat")
        _report(stats, prefix.with_suffix(".txt"))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from gateway.cli.main import main as maas_main

    return maas_main(["serve", *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
