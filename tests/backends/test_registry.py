from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backends.registry import BackendNotFound, available_backends, load_backend_class, validate_engine_options
from backends.vllm_backend import VLLMBackend


def test_builtin_vllm_backend_is_found_by_name() -> None:
    assert "vllm" in available_backends()
    assert load_backend_class("vllm") is VLLMBackend


def test_gateway_and_catalog_load_without_importing_torch_or_vllm(repo_root: Path) -> None:
    code = (
        "import sys, gateway.app, gateway.cli.main, gateway.serving.serve_runtime;"
        "import gateway.catalog.schema as c;"
        "c.load_catalog(__import__('pathlib').Path('models.yaml'));"
        "heavy = sorted(m for m in ('torch', 'vllm', 'transformers') if m in sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=repo_root, check=True)


def test_backend_can_be_named_as_module_and_class() -> None:
    assert load_backend_class("backends.vllm_backend:VLLMBackend") is VLLMBackend


def test_unknown_backends_are_clear_errors() -> None:
    with pytest.raises(BackendNotFound, match="unknown backend 'tpu-magic'"):
        load_backend_class("tpu-magic")
    with pytest.raises(BackendNotFound, match="cannot be loaded"):
        load_backend_class("no_such_module:Backend")


def test_engine_options_are_validated_by_the_backend_schema() -> None:
    options = validate_engine_options("vllm", {"dtype": "float32", "kv_cache_gib": 1})
    assert options.model_dump()["dtype"] == "float32"
