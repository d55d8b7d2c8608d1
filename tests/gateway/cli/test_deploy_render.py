"""`maas deploy render`: files written, worker groups reported, bad input refused with exit code 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gateway.cli.deploy import pairs
from gateway.cli.main import main
from gateway.kubernetes.options import RenderError

CPU_MODEL = {
    "name": "small",
    "family": "qwen",
    "context_length": 4096,
    "weights": {"kind": "local", "path": "/models/small"},
    "deployments": [{"chip": "cpu", "replicas": 3}],
}


def test_render_writes_numbered_files_and_reports_the_worker_groups(
    write_catalog: Callable[[object], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = write_catalog({"models": [CPU_MODEL]})
    out = tmp_path / "k8s"

    code = main(["deploy", "render", "--catalog", str(catalog), "--out", str(out), "--namespace", "prod"])

    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "00-namespace.yaml",
        "10-ray-cluster.yaml",
        "20-gateway.yaml",
        "40-monitoring.yaml",
    ]
    stdout = capsys.readouterr().out
    assert "worker group cpu-own: 3 pod(s) (small)" in stdout
    assert f"nothing was applied; review, then: kubectl apply -f {out}" in stdout
    (cluster,) = yaml.safe_load_all((out / "10-ray-cluster.yaml").read_text())
    assert cluster["metadata"]["namespace"] == "prod"
    assert (
        (out / "20-gateway.yaml")
        .read_text()
        .startswith(f"# Rendered by `maas deploy render` from {catalog}.")
    )


def test_render_is_deterministic_and_removes_a_file_it_no_longer_writes(
    write_catalog: Callable[[object], Path], tmp_path: Path
) -> None:
    catalog = str(write_catalog({"models": [CPU_MODEL]}))
    first, second = tmp_path / "a", tmp_path / "b"
    hosts = ["--postgres-host", "pg.internal", "--redis-host", "redis.internal"]

    assert main(["deploy", "render", "--catalog", catalog, "--out", str(first), *hosts]) == 0
    assert main(["deploy", "render", "--catalog", catalog, "--out", str(second), *hosts]) == 0
    assert {p.name: p.read_bytes() for p in first.iterdir()} == {
        p.name: p.read_bytes() for p in second.iterdir()
    }

    assert (first / "30-external-stores.yaml").exists()
    assert main(["deploy", "render", "--catalog", catalog, "--out", str(first)]) == 0
    assert not (first / "30-external-stores.yaml").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image", "nvidia"], "error: --image 'nvidia': expected KIND=VALUE"),
        (
            ["--chips-per-node", "nvidia=eight"],
            "error: --chips-per-node 'nvidia=eight': 'eight' is not a valid",
        ),
        (
            ["--gateway-replicas", "3", "--gateway-max-replicas", "2"],
            "error: gateway replicas 3 must be at least 1 and at most the autoscaler's maximum 2",
        ),
        (["--dashboards", "/nonexistent"], "error: --dashboards /nonexistent: no such folder"),
    ],
)
def test_bad_options_exit_2_with_the_reason(
    write_catalog: Callable[[object], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    catalog = str(write_catalog({"models": [CPU_MODEL]}))

    code = main(["deploy", "render", "--catalog", catalog, "--out", str(tmp_path / "k8s"), *args])

    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "k8s").exists()


def test_a_broken_catalog_is_reported_as_the_catalog_check_reports_it(
    write_catalog: Callable[[object], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = str(write_catalog({"models": [{**CPU_MODEL, "deployments": [{"chip": "tpu"}]}]}))

    assert main(["deploy", "render", "--catalog", catalog, "--out", str(tmp_path / "k8s")]) == 2
    assert "runs on chip 'tpu', which is not a known kind" in capsys.readouterr().err


def test_pairs_reads_kind_value_options() -> None:
    assert pairs(["nvidia=4", "ascend=8"], "--chips-per-node", int) == {"nvidia": 4, "ascend": 8}
    with pytest.raises(RenderError, match="expected KIND=VALUE"):
        pairs(["=4"], "--chips-per-node", int)
