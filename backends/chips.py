"""Chip kinds: how a catalog's ``chip`` maps to Ray resources, visible-devices variables and torch devices.

A deployment names a chip kind and how many chips each replica needs. The gateway asks Ray for that many
units of the kind's Ray resource, and the replica makes only its own chips visible to the engine:

* Ray's own accelerator managers (``GPU`` for NVIDIA and AMD, ``NPU`` for Ascend) assign device ids and set
  the visible-devices variable themselves.
* For every other kind Ray only counts a custom resource. The replica then claims device slots on its node
  (``claim_devices``): one lock file per device, held for the life of the replica process, so two replicas
  on one node never share a chip and a killed replica frees its chips with its process.

Built-in kinds are below; an operator adds others as data in the catalog's ``chips:`` section.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class ChipKind:
    name: str
    ray_resource: str | None
    """Ray resource counted per chip; ``None`` for the CPU (replicas take no resource)."""
    visible_devices_env: str | None
    """Variable that restricts the chip runtime to the replica's devices, e.g. ``CUDA_VISIBLE_DEVICES``."""
    torch_device: str
    """Torch device type for the transformers backend: ``cuda``, ``npu``, ``gcu``, ``cpu``, ..."""
    torch_module: str | None = None
    """Module that registers the device with torch (``torch_npu``); imported before the device is used."""
    ray_assigns_devices: bool = False
    """Ray's accelerator manager picks device ids and sets ``visible_devices_env`` itself."""
    smi: str | None = None
    """The vendor's command-line tool that lists this node's chips (``maas node resources``)."""
    description: str = ""
    device_plugin_resource: str | None = None
    """The Kubernetes extended resource the vendor's device plugin advertises for one chip
    (``nvidia.com/gpu``); what a worker pod asks for in ``maas deploy render``. ``None``: unknown."""


BUILTIN_CHIPS: dict[str, ChipKind] = {
    chip.name: chip
    for chip in (
        ChipKind("cpu", None, None, "cpu", description="Host CPUs (development, small models)"),
        ChipKind(
            "nvidia",
            "GPU",
            "CUDA_VISIBLE_DEVICES",
            "cuda",
            ray_assigns_devices=True,
            smi="nvidia-smi",
            description="NVIDIA GPUs (H-, L-series, A5000, 3090, ...)",
            device_plugin_resource="nvidia.com/gpu",
        ),
        ChipKind(
            "amd",
            "GPU",
            "HIP_VISIBLE_DEVICES",
            "cuda",
            ray_assigns_devices=True,
            smi="rocm-smi",
            description="AMD Instinct GPUs (ROCm)",
            device_plugin_resource="amd.com/gpu",
        ),
        ChipKind(
            "ascend",
            "NPU",
            "ASCEND_RT_VISIBLE_DEVICES",
            "npu",
            torch_module="torch_npu",
            ray_assigns_devices=True,
            smi="npu-smi",
            description="Huawei Ascend NPUs (910B, Atlas 800I)",
            device_plugin_resource="huawei.com/Ascend910",
        ),
        ChipKind(
            "enflame",
            "GCU",
            "TOPS_VISIBLE_DEVICES",
            "gcu",
            torch_module="torch_gcu",
            smi="efsmi",
            description="Enflame GCUs (S60, i20)",
            device_plugin_resource="enflame.com/gcu",
        ),
        ChipKind(
            "cambricon",
            "MLU",
            "MLU_VISIBLE_DEVICES",
            "mlu",
            torch_module="torch_mlu",
            smi="cnmon",
            description="Cambricon MLUs",
            device_plugin_resource="cambricon.com/mlu",
        ),
        ChipKind(
            "moore_threads",
            "MUSA",
            "MUSA_VISIBLE_DEVICES",
            "musa",
            torch_module="torch_musa",
            smi="mthreads-gmi",
            description="Moore Threads GPUs",
            device_plugin_resource="mthreads.com/gpu",
        ),
    )
}


class ChipUnavailable(RuntimeError):
    """The replica cannot get the chips it was placed for (a clear message for the operator)."""


def chip_table(extra: Iterable[ChipKind] = ()) -> dict[str, ChipKind]:
    """Built-in kinds plus the catalog's own (which may not redefine a built-in)."""
    table = dict(BUILTIN_CHIPS)
    for chip in extra:
        table[chip.name] = chip
    return table


def ray_actor_resources(chip: ChipKind, count: float) -> dict[str, object]:
    """The ``ray_actor_options`` entries that make Ray place a replica on ``count`` chips of ``chip``."""
    if chip.ray_resource is None or count == 0:
        return {}
    if chip.ray_resource == "GPU":
        return {"num_gpus": count}
    return {"resources": {chip.ray_resource: count}}


_SLOTS_DIR = Path(tempfile.gettempdir()) / "maas-chip-slots"


@dataclass
class DeviceClaim:
    """Device ids held by this process; the locks go when the process (or ``release``) does."""

    chip: str
    devices: list[int]
    _files: list[IO[bytes]]

    def release(self) -> None:
        for handle in self._files:
            handle.close()
        self._files.clear()


def claim_devices(chip: ChipKind, count: int, node_total: int, slots_dir: Path = _SLOTS_DIR) -> DeviceClaim:
    """Claim ``count`` free device ids out of ``node_total`` on this node for a custom-resource chip."""
    directory = slots_dir / re.sub(r"[^A-Za-z0-9_.-]", "_", chip.name)
    directory.mkdir(parents=True, exist_ok=True)
    held: list[IO[bytes]] = []
    devices: list[int] = []
    for device in range(node_total):
        if len(devices) == count:
            break
        handle: IO[bytes] = open(directory / f"{device}.lock", "ab")  # noqa: SIM115 (held while alive)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        held.append(handle)
        devices.append(device)
    if len(devices) < count:
        for handle in held:
            handle.close()
        raise ChipUnavailable(
            f"this node declares {node_total} {chip.name} chip(s) ({chip.ray_resource}) but only "
            f"{len(devices)} are free for a replica that needs {count}"
        )
    return DeviceClaim(chip.name, devices, held)


def visible_devices(chip: ChipKind, environ: Mapping[str, str] = os.environ) -> str | None:
    """The value of the chip's visible-devices variable in ``environ`` (what the engine will see)."""
    if chip.visible_devices_env is None:
        return None
    return environ.get(chip.visible_devices_env)
