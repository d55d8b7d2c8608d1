"""`maas serve --workers N`: one scrape reports the metrics of every gateway process of the host.

Real processes: prometheus_client picks its multiprocess mode when it is imported, so each writer is a
child Python with ``PROMETHEUS_MULTIPROC_DIR`` set, as the workers are started.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO

WRITER = """
import sys, time
from pathlib import Path
from gateway.observability.metrics import GatewayMetrics
from tests.gateway.billing.ledger.test_stores import record
metrics = GatewayMetrics(Path(sys.argv[1]))
for i in range(int(sys.argv[2])):
    metrics.observe(record(f"r{i}"))
metrics.in_flight.labels("m1", "model-m1", "cpu", "own").set(int(sys.argv[2]))
metrics.replicas.labels("m1", "model-m1", "cpu", "own").set(2)
"""

READER = """
import sys
from pathlib import Path
from gateway.observability.metrics import GatewayMetrics
sys.stdout.write(GatewayMetrics(Path(sys.argv[1])).exposition().decode())
"""


def run(code: str, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", code, str(folder), *args]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=True)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labelled(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> list[float]:
    return [value for (n, _), value in found.items() if n == name]


def test_one_scrape_sums_every_workers_requests_and_in_flight(tmp_path: Path) -> None:
    from prometheus_client import multiprocess

    first = run(WRITER, tmp_path, "3")
    run(WRITER, tmp_path, "4")
    found = samples(run(READER, tmp_path).stdout)
    assert sum(labelled(found, "maas_requests_total")) == 7
    assert sum(labelled(found, "maas_tokens_total")) == 7 * (10 + 5)
    assert labelled(found, "maas_request_duration_seconds_count") == [7]
    assert labelled(found, "maas_requests_in_flight") == [7]  # live gauges add up
    assert labelled(found, "maas_replicas") == [2]  # the same in every process: not doubled
    assert first.returncode == 0

    # A stopped worker's in-flight gauge leaves the sum once it is reaped; its counts stay.
    for dead in sorted(tmp_path.glob("gauge_livesum_*.db"))[:1]:
        multiprocess.mark_process_dead(int(dead.stem.rsplit("_", 1)[1]), str(tmp_path))  # type: ignore[no-untyped-call]
    found = samples(run(READER, tmp_path).stdout)
    assert labelled(found, "maas_requests_in_flight")[0] in (3, 4)
    assert sum(labelled(found, "maas_requests_total")) == 7
