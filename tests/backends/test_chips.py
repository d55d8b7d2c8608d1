"""Device slots for custom-resource chips and torch devices of chip kinds, on a machine without them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backends.chips import BUILTIN_CHIPS, ChipKind, ChipUnavailable, claim_devices
from backends.torch_device import torch_device

GCU = BUILTIN_CHIPS["enflame"]


def test_two_replicas_on_one_node_claim_different_devices(tmp_path: Path) -> None:
    first = claim_devices(GCU, 1, 2, tmp_path)
    second = claim_devices(GCU, 1, 2, tmp_path)
    assert (first.devices, second.devices) == ([0], [1])
    with pytest.raises(ChipUnavailable, match="only 0 are free"):
        claim_devices(GCU, 1, 2, tmp_path)
    first.release()
    assert claim_devices(GCU, 1, 2, tmp_path).devices == [0]


def test_a_killed_replica_frees_its_devices_with_its_process(tmp_path: Path) -> None:
    code = (
        "import time; from pathlib import Path; from backends.chips import BUILTIN_CHIPS, claim_devices\n"
        f"c = claim_devices(BUILTIN_CHIPS['enflame'], 2, 2, Path({str(tmp_path)!r}))\n"
        "print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ChipUnavailable):
            claim_devices(GCU, 1, 2, tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert claim_devices(GCU, 2, 2, tmp_path).devices == [0, 1]


def test_a_missing_vendor_torch_plugin_names_the_package() -> None:
    with pytest.raises(ChipUnavailable, match="needs the 'torch_gcu' package"):
        torch_device(GCU)
    with pytest.raises(ChipUnavailable, match="'torch_npu'"):
        torch_device(BUILTIN_CHIPS["ascend"])


def test_no_visible_accelerator_is_a_clear_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with pytest.raises(ChipUnavailable, match=r"no nvidia device.*CUDA_VISIBLE_DEVICES=3"):
        torch_device(BUILTIN_CHIPS["nvidia"])


def test_a_kind_whose_plugin_imports_uses_that_torch_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in vendor plugin that registers nothing: the device type stays unknown to torch.
    (tmp_path / "fake_vendor_torch.py").write_text("REGISTERED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    kind = ChipKind("vendorx", "VX", "VX_VISIBLE_DEVICES", "vx", torch_module="fake_vendor_torch")
    with pytest.raises(ChipUnavailable, match=r"torch\.vx reports none"):
        torch_device(kind)
    assert str(torch_device(BUILTIN_CHIPS["cpu"])) == "cpu"
