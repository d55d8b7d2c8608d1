"""The side-by-side benchmark runs two real gateways from two checkouts against one mock, and records every
round's figures for both, latency and the gateway's CPU per request."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import ab
from benchmarks.procs import REPO


def test_two_gateways_are_measured_in_alternating_rounds_and_the_record_names_the_base(
    tmp_path: Path,
) -> None:
    result = ab.run(REPO, rounds=2, stream=False, results_dir=tmp_path, command="test")
    assert result["base"] == str(REPO) and result["scenario"] == "nonstream"
    assert [len(result["added_ms"][name]) for name in ("A", "B")] == [2, 2]
    assert all(isinstance(value, float) for value in result["added_ms"]["A"] + result["added_ms"]["B"])
    assert len(result["b_minus_a_ms"]) == 2 and 0 <= result["rounds_b_faster"] <= 2
    # each cell's CPU is the gateway process's own, per request: some, and less than a whole second
    assert all(0 < cpu < 1000 for name in ("A", "B") for cpu in result["cpu_ms_per_request"][name])
    saved = json.loads((tmp_path / "ab-latest.json").read_text())
    assert saved["median_b_minus_a_ms"] == result["median_b_minus_a_ms"]
    assert "ledger_fsync_ms" in saved["machine"]
