"""Percentiles and summaries of per-request samples (numpy's default linear interpolation, no numpy)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and mean in milliseconds (None when there are no samples)."""
    if not seconds:
        return {"p50": None, "p99": None, "mean": None}
    return {
        "p50": round(percentile(seconds, 50) * 1000, 3),
        "p99": round(percentile(seconds, 99) * 1000, 3),
        "mean": round(sum(seconds) / len(seconds) * 1000, 3),
    }


def median_rows(rows: list[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per ``key`` value: the median of every numeric field over the rows that share it (the
    first row's other fields), in first-seen order, with ``rounds`` (how many rows it summarises)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in key), []).append(row)
    merged = []
    for members in groups.values():
        row = dict(members[0])
        for field, value in members[0].items():
            if field not in key and isinstance(value, int | float) and not isinstance(value, bool):
                values = [m[field] for m in members if isinstance(m.get(field), int | float)]
                middle = percentile(values, 50)
                whole = all(isinstance(v, int) for v in values) and middle == int(middle)
                row[field] = int(middle) if whole else round(middle, 3)
        row["rounds"] = len(members)
        merged.append(row)
    return merged


def round_schedule(systems: Sequence[str], rounds: int) -> list[tuple[str, int]]:
    """``(system, round)`` in run order: every round runs every system, each round starting one system
    later than the one before, so no system always runs first (right after the machine was idle) or
    always right after the same neighbour."""
    return [
        (systems[(start + i) % len(systems)], start + 1)
        for start in range(rounds)
        for i in range(len(systems))
    ]
