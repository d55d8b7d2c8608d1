"""`maas node resources`: fake vendor tools on PATH print listings in the real tools' formats."""

from __future__ import annotations

import json
import shlex
import shutil
import stat
import time
from pathlib import Path

import pytest

from backends.chips import BUILTIN_CHIPS
from gateway.cli.node_resources import (
    HEAD_PORT,
    DetectedChips,
    detect_node_chips,
    format_report,
    ray_start_line,
    run_tool,
)

CAT = shutil.which("cat") or "/bin/cat"
SLEEP = shutil.which("sleep") or "/bin/sleep"

NVIDIA_SMI_ARGS = "--query-gpu=index,name --format=csv,noheader"
NVIDIA_SMI = "".join(f"{index}, NVIDIA H100 80GB HBM3\n" for index in range(8))

NPU_SMI_ARGS = "info -m"
NPU_SMI = (
    "        NPU ID                         Chip ID                        Chip Logic ID"
    "                  Chip Name\n"
    + "".join(
        f"        {npu}                              0                              {npu}"
        "                              Ascend 910B4\n"
        f"        {npu}                              1                              -"
        "                              Mcu\n"
        for npu in range(8)
    )
)

EFSMI_ARGS = "-q -d DEVICE"
EFSMI = (
    "----------------------------------------------------------------------------\n"
    "------------------- Enflame System Management Interface --------------------\n"
    "---------- Enflame Tech, All Rights Reserved. 2024 Copyright (C) -----------\n"
    "----------------------------------------------------------------------------\n"
    "\n"
    + "".join(
        f"DEV ID {device}\n"
        "    Device Info\n"
        "        Dev Name                : S60\n"
        f"        Dev UUID                : TPUH7419060{device}\n"
        "        Dev SN                  : C0AA640520685\n"
        "        Health                  : True\n"
        for device in range(8)
    )
)

ROCM_SMI_ARGS = "--showproductname"
ROCM_SMI = (
    "============================ ROCm System Management Interface ============================\n"
    "====================================== Product Info ======================================\n"
    "GPU[0]\t\t: Card Series: \t\tAMD Instinct MI300X\n"
    "GPU[0]\t\t: Card Model: \t\t0x74a1\n"
    "GPU[0]\t\t: Card Vendor: \t\tAdvanced Micro Devices, Inc. [AMD/ATI]\n"
    "GPU[0]\t\t: Card SKU: \t\tM3000100\n"
    "GPU[1]\t\t: Card series: \t\tAMD Instinct MI300X\n"
    "GPU[1]\t\t: Card model: \t\t0x74a1\n"
    "==========================================================================================\n"
    "================================== End of ROCm SMI Log ===================================\n"
)


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder that is the whole PATH: only the fake tools written into it exist."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def fake_tool(bin_dir: Path, name: str, args: str, output: str, exit_code: int = 0) -> Path:
    """A shell script that prints ``output`` when called with exactly ``args`` and fails otherwise."""
    (bin_dir / f"{name}.out").write_text(output)
    script = bin_dir / name
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$*" != {shlex.quote(args)} ]; then echo "unexpected arguments: $*" >&2; exit 64; fi\n'
        f"{CAT} {shlex.quote(str(bin_dir / f'{name}.out'))}\n"
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_nvidia_smi_gpus_are_counted_named_and_declared_with_num_gpus(tools: Path) -> None:
    fake_tool(tools, "nvidia-smi", NVIDIA_SMI_ARGS, NVIDIA_SMI)

    detected = detect_node_chips(BUILTIN_CHIPS)

    assert detected == [
        DetectedChips("nvidia", "GPU", 8, ("NVIDIA H100 80GB HBM3",), f"nvidia-smi {NVIDIA_SMI_ARGS}")
    ]
    assert ray_start_line(detected, num_cpus=16) == (
        f"ray start --head --port={HEAD_PORT} --num-cpus=16 --num-gpus=8"
    )
    report = format_report(detected, num_cpus=16)
    assert "nvidia: 8 x GPU (NVIDIA H100 80GB HBM3)" in report
    assert report.endswith(f"ray start --head --port={HEAD_PORT} --num-cpus=16 --num-gpus=8")


def test_ascend_counts_logical_chips_not_mcu_rows_and_declares_npu_resource(tools: Path) -> None:
    fake_tool(tools, "npu-smi", NPU_SMI_ARGS, NPU_SMI)

    detected = detect_node_chips(BUILTIN_CHIPS)

    assert [(d.kind, d.resource, d.count, d.models) for d in detected] == [
        ("ascend", "NPU", 8, ("Ascend 910B4",))
    ]
    assert ray_start_line(detected, num_cpus=192) == (
        f"""ray start --head --port={HEAD_PORT} --num-cpus=192 --resources='{{"NPU": 8}}'"""
    )


def test_enflame_gcus_are_declared_as_their_custom_resource(tools: Path) -> None:
    fake_tool(tools, "efsmi", EFSMI_ARGS, EFSMI)

    detected = detect_node_chips(BUILTIN_CHIPS)

    assert [(d.kind, d.resource, d.count, d.models) for d in detected] == [("enflame", "GCU", 8, ("S60",))]
    assert ray_start_line(detected, num_cpus=64).endswith(""" --resources='{"GCU": 8}'""")


def test_amd_rocm_smi_card_series_lines_in_either_spelling_are_gpus(tools: Path) -> None:
    fake_tool(tools, "rocm-smi", ROCM_SMI_ARGS, ROCM_SMI)

    detected = detect_node_chips(BUILTIN_CHIPS)

    assert [(d.kind, d.resource, d.count, d.models) for d in detected] == [
        ("amd", "GPU", 2, ("AMD Instinct MI300X",))
    ]
    assert ray_start_line(detected, num_cpus=8).endswith(" --num-gpus=2")


def test_custom_resources_of_several_kinds_go_into_one_json_object_and_gpus_stay_apart(
    tools: Path,
) -> None:
    fake_tool(tools, "nvidia-smi", NVIDIA_SMI_ARGS, "0, NVIDIA L40S\n1, NVIDIA L40S\n")
    fake_tool(tools, "npu-smi", NPU_SMI_ARGS, NPU_SMI)
    fake_tool(tools, "efsmi", EFSMI_ARGS, EFSMI)

    detected = detect_node_chips(BUILTIN_CHIPS)
    line = ray_start_line(detected, num_cpus=32, head_address="10.0.0.5:6380")

    assert [d.kind for d in detected] == ["nvidia", "ascend", "enflame"]
    words = shlex.split(line)
    assert words[:5] == ["ray", "start", "--address=10.0.0.5:6380", "--num-cpus=32", "--num-gpus=2"]
    resources = [word for word in words if word.startswith("--resources=")]
    assert len(resources) == 1
    assert json.loads(resources[0].removeprefix("--resources=")) == {"GCU": 8, "NPU": 8}


def test_tool_that_exits_nonzero_is_skipped_and_the_others_still_count(tools: Path) -> None:
    fake_tool(tools, "nvidia-smi", NVIDIA_SMI_ARGS, NVIDIA_SMI, exit_code=9)
    fake_tool(tools, "efsmi", EFSMI_ARGS, EFSMI)

    detected = detect_node_chips(BUILTIN_CHIPS)

    assert [d.kind for d in detected] == ["enflame"]


def test_tool_that_hangs_is_killed_at_the_timeout_and_skipped(tools: Path) -> None:
    hanging = tools / "npu-smi"
    hanging.write_text(f"#!/bin/sh\nexec {SLEEP} 30\n")
    hanging.chmod(hanging.stat().st_mode | stat.S_IXUSR)
    fake_tool(tools, "nvidia-smi", NVIDIA_SMI_ARGS, NVIDIA_SMI)

    started = time.monotonic()
    detected = detect_node_chips(BUILTIN_CHIPS, run=lambda argv: run_tool(argv, timeout_s=0.5))

    assert time.monotonic() - started < 10
    assert [d.kind for d in detected] == ["nvidia"]


def test_no_vendor_tools_gives_a_cpu_only_report_and_a_plain_ray_start(tools: Path) -> None:
    detected = detect_node_chips(BUILTIN_CHIPS)

    assert detected == []
    report = format_report(detected, num_cpus=4)
    assert "no accelerators found (CPU only)" in report
    assert report.endswith(f"ray start --head --port={HEAD_PORT} --num-cpus=4")


def test_head_line_never_uses_redis_port_and_a_bare_worker_address_gets_the_head_port() -> None:
    assert HEAD_PORT != 6379
    assert "6379" not in ray_start_line([], num_cpus=2)
    assert ray_start_line([], num_cpus=2, head_address="head-1") == (
        f"ray start --address=head-1:{HEAD_PORT} --num-cpus=2"
    )


def test_tools_without_a_confirmed_listing_format_are_not_run(tools: Path) -> None:
    for name in ("cnmon", "mthreads-gmi"):
        marker = tools / f"{name}.ran"
        script = tools / name
        script.write_text(f"#!/bin/sh\n: > {shlex.quote(str(marker))}\necho 0 MLU370\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)

    assert detect_node_chips(BUILTIN_CHIPS) == []
    assert not (tools / "cnmon.ran").exists()
    assert not (tools / "mthreads-gmi.ran").exists()


def test_run_tool_returns_none_for_a_command_that_is_not_installed(tools: Path) -> None:
    assert run_tool(["nvidia-smi", "-L"]) is None


def test_maas_node_resources_prints_the_chips_and_the_line_to_join_a_head(
    tools: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli.main import main

    fake_tool(tools, "nvidia-smi", NVIDIA_SMI_ARGS, NVIDIA_SMI)
    fake_tool(tools, "efsmi", EFSMI_ARGS, EFSMI)

    code = main(
        [
            "node",
            "resources",
            "--head",
            "10.0.0.1:6380",
            "--num-cpus",
            "32",
            "--config",
            str(tmp_path / "none"),
        ]
    )

    out = capsys.readouterr().out
    assert code == 0
    assert "nvidia: 8 x GPU (NVIDIA H100 80GB HBM3)" in out
    assert "enflame: 8 x GCU (S60)" in out
    assert """ray start --address=10.0.0.1:6380 --num-cpus=32 --num-gpus=8 --resources='{"GCU": 8}'""" in out


def test_a_node_of_a_pool_declares_one_unit_of_the_pools_resource() -> None:
    line = ray_start_line(
        [DetectedChips("enflame", "GCU", 8, ("S60",), "efsmi")], num_cpus=64, pool="eu-rented"
    )
    assert line.endswith(""" --resources='{"GCU": 8, "maas_pool_eu-rented": 1}'""")
    assert "pool: eu-rented (Ray resource maas_pool_eu-rented)" in format_report([], 4, pool="eu-rented")


def test_a_node_of_a_pool_also_declares_the_pool_resource(tools: Path) -> None:
    fake_tool(tools, "efsmi", EFSMI_ARGS, EFSMI)

    detected = detect_node_chips(BUILTIN_CHIPS)

    line = ray_start_line(detected, num_cpus=64, head_address="10.0.0.1", pool="own")
    assert line.endswith(""" --resources='{"GCU": 8, "maas_pool_own": 1}'""")
    assert ray_start_line([], num_cpus=8, head_address="10.0.0.1", pool="spot").endswith(
        """ --num-cpus=8 --resources='{"maas_pool_spot": 1}'"""
    )


def test_maas_node_resources_refuses_a_pool_that_is_not_a_pool_name(
    tools: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli.main import main

    code = main(["node", "resources", "--pool", "Own_Pool", "--config", str(tmp_path / "none")])

    assert code == 2
    assert "--pool 'Own_Pool' is not a pool name" in capsys.readouterr().err
