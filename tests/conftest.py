"""Shared fixtures: paths, a catalog file factory and the default catalog's prepared SmolLM2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gateway.catalog.model_prep import prepare_model
from gateway.catalog.schema import load_catalog

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def write_catalog(tmp_path: Path) -> Callable[[object], Path]:
    """Write a catalog (a dict dumped as YAML, or raw text) and return its path."""

    def write(content: object) -> Path:
        path = tmp_path / "catalog.yaml"
        text = content if isinstance(content, str) else yaml.safe_dump(content)
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def smollm2_weights() -> Path:
    """The SmolLM2 folder the default catalog serves, prepared as `maas serve` does (converted once into
    .cache/models, where the e2e gateways find it)."""
    model = load_catalog(REPO / "models.yaml").models[0]
    return Path(prepare_model(model, REPO / ".cache" / "models", lambda line: None))
