"""What every benchmark result records about its host: the CPU's instruction sets, the disk's fsync, what
the disk adds to the ledger's commit and what waking another process costs."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from benchmarks.machine import (
    CPU_FLAGS,
    cpu_features,
    fsync_latency_ms,
    ledger_fsync_ms,
    machine_info,
    wake_rtt_ms,
)


def test_cpu_features_are_the_flags_of_this_cpu_that_matter() -> None:
    found = cpu_features()
    flags = Path("/proc/cpuinfo").read_text().split()
    assert set(found) <= set(CPU_FLAGS)
    assert all(flag in flags for flag in found)
    assert [flag for flag in CPU_FLAGS if flag in flags] == found


def test_fsync_latency_is_measured_on_the_given_disk_and_leaves_nothing(tmp_path: Path) -> None:
    latency = fsync_latency_ms(tmp_path, writes=20)
    assert 0 < latency["p50"] <= latency["p95"]
    assert list(tmp_path.iterdir()) == []


def test_the_ledgers_fsync_is_its_durable_commit_less_its_crash_safe_one_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    fsync = ledger_fsync_ms(tmp_path, commits=20)
    assert fsync["durable_commit_p50"] > 0 and fsync["crash_safe_commit_p50"] > 0
    assert abs(fsync["p50"] - (fsync["durable_commit_p50"] - fsync["crash_safe_commit_p50"])) <= 0.002
    assert list(tmp_path.iterdir()) == []


def test_the_wake_round_trip_is_measured_free_and_on_one_cpu_and_leaves_no_process_or_pinning() -> None:
    affinity = os.sched_getaffinity(0)
    children = psutil.Process().children()
    rtt = wake_rtt_ms(round_trips=50)
    assert rtt["any_cpu_p50"] > 0 and rtt["one_cpu_p50"] > 0
    assert os.sched_getaffinity(0) == affinity
    assert psutil.Process().children() == children


def test_machine_info_carries_the_cpu_the_disk_and_the_wake_up() -> None:
    info = machine_info()
    assert info["cpu_features"] == cpu_features() and "p50" in info["fsync_4k_ms"]
    assert "p50" in info["ledger_fsync_ms"] and "one_cpu_p50" in info["wake_rtt_ms"]
