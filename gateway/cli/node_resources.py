"""What chips this node offers, asked of the vendors' tools, and the ``ray start`` line that declares them.

``maas node resources`` runs each chip kind's listing tool (``ChipKind.smi``) that is installed, counts the
chips it reports and prints the line that makes Ray count them: ``--num-gpus`` for the ``GPU`` resource and
one ``--resources`` JSON object for every other one (``NPU``, ``GCU``, ...). A tool that is missing, fails
or hangs is skipped: the node simply offers none of that kind.

The listings parsed here, each checked against published output of the real tool:

* ``nvidia-smi --query-gpu=index,name --format=csv,noheader``: one ``<index>, <name>`` line per GPU
  (``0, NVIDIA H100 80GB HBM3``).
* ``rocm-smi --showproductname``: ``GPU[<n>]<tabs>: Card series: <name>`` per GPU (``Card Series`` in
  newer releases), among other ``Card ...`` lines.
* ``npu-smi info -m``: a table ``NPU ID  Chip ID  Chip Logic ID  Chip Name``. Rows with a numeric logic id
  are the chips the runtime sees (``Ascend 910B4``); ``Mcu`` rows have ``-`` and are not compute chips.
  ``info -l`` only gives per-card ``NPU ID``/``Chip Count`` lines, no names, and counts cards rather than the
  logical chips that ``ASCEND_RT_VISIBLE_DEVICES`` and Ray's NPU detection count.
* ``efsmi -q -d DEVICE``: a ``DEV ID <n>`` block per GCU with a ``Dev Name : <name>`` line (``S60``).

Cambricon's ``cnmon`` and Moore Threads' ``mthreads-gmi`` are not asked: no published sample of a listing
was found to parse, so those chips are declared by hand (``ray start --resources='{"MLU": N}'``).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from backends.chips import ChipKind
from gateway.catalog.pools import pool_resource

logger = logging.getLogger(__name__)

HEAD_PORT = 6380
"""Port for the GCS of a head started by the printed line; Ray's default 6379 is often Redis's."""


@dataclass(frozen=True)
class DetectedChips:
    kind: str
    """``ChipKind.name``, e.g. ``nvidia``."""
    resource: str
    """``ChipKind.ray_resource``, e.g. ``GPU``."""
    count: int
    models: tuple[str, ...]
    """Distinct product names as the tool reports them, e.g. ``("NVIDIA H100 80GB HBM3",)``."""
    tool: str
    """The command that reported them."""


def _nvidia_smi(output: str) -> list[str]:
    names = []
    for line in output.splitlines():
        index, _, name = line.partition(",")
        if index.strip().isdigit():
            names.append(name.strip())
    return names


_ROCM_CARD_SERIES = re.compile(r"^GPU\[(\d+)\]\s*:\s*Card series\s*:\s*(.*?)\s*$", re.IGNORECASE)


def _rocm_smi(output: str) -> list[str]:
    by_gpu: dict[str, str] = {}
    for line in output.splitlines():
        match = _ROCM_CARD_SERIES.match(line.strip())
        if match:
            by_gpu.setdefault(match.group(1), match.group(2))
    return list(by_gpu.values())


def _npu_smi_chip_map(output: str) -> list[str]:
    names = []
    for line in output.splitlines():
        fields = line.split()
        # NPU ID, Chip ID, Chip Logic ID, Chip Name (which may hold spaces); the header and Mcu rows fail.
        if len(fields) >= 4 and all(field.isdigit() for field in fields[:3]):
            names.append(" ".join(fields[3:]))
    return names


_EFSMI_DEVICE = re.compile(r"^\s*DEV ID\s+(\d+)\s*$")
_EFSMI_NAME = re.compile(r"^\s*Dev Name\s*:\s*(.*?)\s*$")


def _efsmi(output: str) -> list[str]:
    by_device: dict[str, str] = {}
    current: str | None = None
    for line in output.splitlines():
        if device := _EFSMI_DEVICE.match(line):
            current = device.group(1)
            by_device[current] = ""
        elif (name := _EFSMI_NAME.match(line)) and current is not None:
            by_device[current] = name.group(1)
    return list(by_device.values())


_LISTINGS: dict[str, tuple[list[str], Callable[[str], list[str]]]] = {
    "nvidia-smi": (["nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader"], _nvidia_smi),
    "rocm-smi": (["rocm-smi", "--showproductname"], _rocm_smi),
    "npu-smi": (["npu-smi", "info", "-m"], _npu_smi_chip_map),
    "efsmi": (["efsmi", "-q", "-d", "DEVICE"], _efsmi),
}
"""Vendor tool -> the command that lists its chips and the parser that returns one name per chip."""


def run_tool(argv: list[str], timeout_s: float = 10) -> str | None:
    """The command's stdout, or ``None`` if it is not installed, fails or runs past ``timeout_s``."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=timeout_s, check=False
        )
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("cannot run %s: %s", argv[0], exc)
        return None
    except subprocess.TimeoutExpired:
        logger.warning("%s did not answer within %gs; skipped", argv[0], timeout_s)
        return None
    if done.returncode != 0:
        logger.warning("%s exited with %d; skipped: %s", argv[0], done.returncode, done.stderr.strip()[:200])
        return None
    return done.stdout


def detect_node_chips(
    chips: Mapping[str, ChipKind], run: Callable[[list[str]], str | None] = run_tool
) -> list[DetectedChips]:
    """Ask each kind's vendor tool (``ChipKind.smi``) that is on PATH; kinds whose tool is absent or fails
    are skipped, and so are tools whose listing format is not known here."""
    outputs: dict[str, str | None] = {}
    detected = []
    for kind in chips.values():
        if kind.ray_resource is None or kind.smi is None:
            continue
        listing = _LISTINGS.get(kind.smi)
        if listing is None:
            logger.debug("no known listing for %s (%s); declare its chips by hand", kind.smi, kind.name)
            continue
        argv, parse = listing
        if kind.smi not in outputs:  # two kinds may share one tool; ask it once
            outputs[kind.smi] = run(list(argv))
        output = outputs[kind.smi]
        if output is None:
            continue
        names = parse(output)
        if names:
            models = tuple(dict.fromkeys(name for name in names if name))
            detected.append(DetectedChips(kind.name, kind.ray_resource, len(names), models, shlex.join(argv)))
    return detected


def ray_start_line(
    detected: Sequence[DetectedChips], num_cpus: int, head_address: str | None = None, pool: str | None = None
) -> str:
    """The ``ray start`` command that declares ``detected`` and ``num_cpus``: a head on ``HEAD_PORT``, or
    a worker joining ``head_address`` (``host`` or ``host:port``; the port defaults to ``HEAD_PORT``).
    A node of ``pool`` also declares one unit of the pool's resource, so that pool's replicas land on it."""
    words = ["ray", "start"]
    if head_address is None:
        words += ["--head", f"--port={HEAD_PORT}"]
    else:
        address = head_address if ":" in head_address else f"{head_address}:{HEAD_PORT}"
        words.append("--address=" + shlex.quote(address))
    words.append(f"--num-cpus={num_cpus}")
    totals: dict[str, int] = {}
    for chips in detected:
        totals[chips.resource] = totals.get(chips.resource, 0) + chips.count
    if pool is not None:
        totals[pool_resource(pool)] = 1
    gpus = totals.pop("GPU", 0)
    if gpus:
        words.append(f"--num-gpus={gpus}")
    if totals:
        words.append("--resources=" + shlex.quote(json.dumps(totals, sort_keys=True)))
    return " ".join(words)


def format_report(
    detected: Sequence[DetectedChips], num_cpus: int, head_address: str | None = None, pool: str | None = None
) -> str:
    """What ``maas node resources`` prints: one line per kind of chip found, then the ``ray start`` line."""
    lines = []
    for chips in detected:
        models = ", ".join(chips.models) or "model not reported"
        lines.append(f"{chips.kind}: {chips.count} x {chips.resource} ({models}) - from `{chips.tool}`")
    if not detected:
        lines.append("no accelerators found (CPU only)")
    lines.append(f"cpus: {num_cpus}")
    role = "start the head node with" if head_address is None else "join the cluster with"
    lines += ["", f"{role}:", "  " + ray_start_line(detected, num_cpus, head_address, pool)]
    return "\n".join(lines)
