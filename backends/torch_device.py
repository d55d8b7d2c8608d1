"""The torch device of a chip kind, with messages an operator can act on when it is not there.

Vendor chips register their device type with torch when their module is imported (``torch_npu`` adds
``npu``, ``torch_gcu`` adds ``gcu``); the replica's visible-devices variable already limits what the
runtime sees, so the replica always uses index 0 of what it sees.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from backends.chips import ChipKind, ChipUnavailable


def import_chip_runtime(kind: ChipKind) -> None:
    """Import the module that registers ``kind``'s torch device, or say what to install."""
    if kind.torch_module is None:
        return
    try:
        importlib.import_module(kind.torch_module)
    except ImportError as exc:
        raise ChipUnavailable(
            f"chip {kind.name!r} needs the {kind.torch_module!r} package (the vendor's torch plugin, built "
            f"for this torch version) on the replica's node: {exc}"
        ) from None


def torch_device(kind: ChipKind) -> Any:
    """``torch.device`` for the first device of ``kind`` this process sees; raise if there is none."""
    import torch

    import_chip_runtime(kind)
    if kind.torch_device == "cpu":
        return torch.device("cpu")
    runtime = getattr(torch, kind.torch_device, None)
    count = runtime.device_count() if runtime is not None and runtime.is_available() else 0
    if count == 0:
        visible = os.environ.get(kind.visible_devices_env or "", "unset")
        raise ChipUnavailable(
            f"no {kind.name} device is available to torch in this replica "
            f"(torch.{kind.torch_device} reports none; {kind.visible_devices_env}={visible})"
        )
    return torch.device(kind.torch_device, 0)
