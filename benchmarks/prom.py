"""Read one histogram's running sum and count from a Prometheus ``/metrics`` page, when there is one."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

GATEWAY_OVERHEAD = "maas_gateway_overhead_seconds"


@dataclass(frozen=True)
class HistogramTotals:
    sum: float
    count: float


def scrape_histogram(
    base_url: str, name: str, headers: dict[str, str] | None = None
) -> HistogramTotals | None:
    """``name``'s ``_sum`` and ``_count`` over all label sets; None when the page or the metric is absent."""
    try:
        response = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    total = {"_sum": 0.0, "_count": 0.0}
    seen = False
    for line in response.text.splitlines():
        for suffix in total:
            prefix = name + suffix
            if line.startswith(prefix) and line[len(prefix)] in " {":
                total[suffix] += float(line.rsplit(" ", 1)[1])
                seen = True
    return HistogramTotals(total["_sum"], total["_count"]) if seen else None


def mean_ms_between(before: HistogramTotals | None, after: HistogramTotals | None) -> float | None:
    """Mean observation in milliseconds between two scrapes."""
    if before is None or after is None or after.count <= before.count:
        return None
    return round((after.sum - before.sum) / (after.count - before.count) * 1000, 3)
