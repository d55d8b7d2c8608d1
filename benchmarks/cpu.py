"""CPU seconds of server processes, grouped by role, read at the edges of a measured window."""

from __future__ import annotations

import psutil

Readings = dict[str, dict[int, float]]


def read_cpu(pids: dict[str, list[int]]) -> Readings:
    """User + system CPU seconds of each process (its own, not its children's), by role."""
    readings: Readings = {}
    for role, members in pids.items():
        readings[role] = {}
        for pid in members:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            readings[role][pid] = times.user + times.system
    return readings


def cpu_delta(before: Readings, after: Readings) -> dict[str, float]:
    """CPU seconds spent per role between two readings (processes present in both)."""
    return {
        role: round(sum(after[role][pid] - t0 for pid, t0 in start.items() if pid in after[role]), 4)
        for role, start in before.items()
    }


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle since boot (all cores)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))
