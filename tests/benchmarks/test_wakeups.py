"""The wake-up census reads real processes from /proc: a process that wakes a hundred times a second is
counted so, one that sleeps is not."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from benchmarks.wakeups import markdown, observe

TICKING = "import time\nwhile True: time.sleep(0.01)"
SLEEPING = "import time\ntime.sleep(60)"


@pytest.fixture
def ticking_and_sleeping() -> Iterator[tuple[int, int]]:
    ticking = subprocess.Popen([sys.executable, "-c", TICKING])
    sleeping = subprocess.Popen([sys.executable, "-c", SLEEPING])
    time.sleep(0.5)  # both past their start-up
    try:
        yield ticking.pid, sleeping.pid
    finally:
        ticking.kill()
        sleeping.kill()
        ticking.wait()
        sleeping.wait()


def test_a_process_that_ticks_every_10_ms_is_counted_as_woken_about_100_times_a_second(
    ticking_and_sleeping: tuple[int, int],
) -> None:
    ticking, sleeping = ticking_and_sleeping
    value, rows = observe(lambda: time.sleep(2) or "done")
    assert value == "done"
    by_pid = {row["pid"]: row for row in rows}
    assert 50 <= by_pid[ticking]["woken_per_s"] <= 110, by_pid[ticking]
    assert sleeping not in by_pid  # under one wake-up a second: not listed
    assert rows == sorted(rows, key=lambda r: -(r["woken_per_s"] + r["preempted_per_s"]))


def test_the_report_names_the_machine_and_every_system_against_the_engine_alone() -> None:
    process = {
        "pid": 1,
        "process": "ray::ServeController",
        "woken_per_s": 170.0,
        "preempted_per_s": 2.0,
        "cpu_ms_per_s": 7.0,
    }
    summary = {
        "engine_preempted_per_s": 900.0,
        "others_woken_per_s": 700.0,
        "others_cpu_ms_per_s": 40.0,
        "others": 9,
    }
    cell = {
        "seconds": [18.5],
        "over_engine_alone": 1.1,
        "idle": {"summary": summary, "processes": [process]},
        "load": {"summary": summary, "processes": [process]},
    }
    result = {
        "command": "python -m benchmarks wakeups --quick",
        "finished_at": "2026-12-06T19:00:00Z",
        "machine": {"cores": 2, "cpu_model": "Xeon", "cpu_features": ["avx2", "amx_tile"]},
        "requests_per_round": 8,
        "max_tokens": 48,
        "systems": {"engine-alone": {"seconds": [16.8], "over_engine_alone": 1.0}, "maas": cell},
    }
    text = markdown(result)
    assert "python -m benchmarks wakeups --quick" in text and "avx2, amx_tile" in text
    assert "| engine-alone | 16.80 | 1.0 | - | - | - |" in text
    assert "| maas | 18.50 | 1.1 | 700.0, 40.0 | 900.0 | 700.0, 40.0 |" in text
    assert "| ray::ServeController | 170.0 | 2.0 | 7.0 |" in text
