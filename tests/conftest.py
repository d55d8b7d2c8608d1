"""Shared fixtures: paths and a catalog file factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

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
