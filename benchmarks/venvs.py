"""Virtual environments for benchmark peers that need packages the project venv must not hold.

Each lives in ``.cache/bench-venvs/<name>`` (gitignored) and is created on first use, so a fresh clone
works; a marker file records the requirement it was built for, and a changed requirement rebuilds it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.procs import REPO

logger = logging.getLogger(__name__)

VENVS_DIR = REPO / ".cache" / "bench-venvs"
_MARKER = "bench-requirement.txt"


class VenvFailed(RuntimeError):
    """The venv could not be created or its packages installed; the message holds pip's last lines."""


def ensure_venv(name: str, requirements: Sequence[str], *, site_packages_of: Path | None = None) -> Path:
    """Return ``.cache/bench-venvs/<name>`` with ``requirements`` installed, creating it if needed.

    ``site_packages_of`` adds another venv's site-packages behind this one's (a ``.pth`` file), for a peer
    that needs only a few packages on top of the project's.
    """
    root = VENVS_DIR / name
    want = "\n".join([*requirements, f"site:{site_packages_of}"])
    marker = root / _MARKER
    if marker.is_file() and marker.read_text() == want:
        return root
    if root.exists():
        shutil.rmtree(root)
    started = time.monotonic()
    logger.info("creating venv %s for %s (first use only)", root, " ".join(requirements))
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    if site_packages_of is not None:
        (_site_packages(root) / "bench-base.pth").write_text(str(_site_packages(site_packages_of)) + "\n")
    pip = subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements],
        capture_output=True,
        text=True,
        check=False,
    )
    if pip.returncode != 0:
        tail = "\n".join((pip.stdout + pip.stderr).strip().splitlines()[-8:])
        raise VenvFailed(f"pip install {' '.join(requirements)} failed in {root}:\n{tail}")
    marker.write_text(want)
    logger.info("venv %s ready in %.0fs", root, time.monotonic() - started)
    return root


def _site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    if not found:
        raise VenvFailed(f"no site-packages under {venv}")
    return found[0]


def package_version(venv: Path, distribution: str) -> str | None:
    """The installed version of ``distribution`` in ``venv``, or None."""
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() or None if proc.returncode == 0 else None
