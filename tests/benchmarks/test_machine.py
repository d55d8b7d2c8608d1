"""What every benchmark result records about its host: the CPU's instruction sets and the disk's fsync."""

from __future__ import annotations

from pathlib import Path

from benchmarks.machine import CPU_FLAGS, cpu_features, fsync_latency_ms, machine_info


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


def test_machine_info_carries_both() -> None:
    info = machine_info()
    assert info["cpu_features"] == cpu_features() and "p50" in info["fsync_4k_ms"]
