"""Where prepared models live: tiny checkpoints get a folder per content (spec, context, template text)."""

from __future__ import annotations

from pathlib import Path

from gateway.catalog.model_prep import weights_path
from gateway.catalog.schema import ModelEntry


def tiny(**changes: object) -> ModelEntry:
    data: dict[str, object] = {
        "name": "tiny-qwen",
        "family": "qwen",
        "context_length": 1024,
        "chat_template": "qwen2_5",
        "weights": {"kind": "tiny_random", "architecture": "qwen2"},
        "deployments": [{}],
    }
    data.update(changes)
    return ModelEntry.model_validate(data)


def test_tiny_checkpoint_folder_is_named_by_model_and_content(tmp_path: Path) -> None:
    path = weights_path(tiny(), tmp_path)
    assert isinstance(path, Path) and path.parent == tmp_path
    assert path.name.startswith("tiny-qwen-")
    assert weights_path(tiny(), tmp_path) == path


def test_tiny_checkpoint_is_rebuilt_when_template_context_or_seed_change(tmp_path: Path) -> None:
    base = weights_path(tiny(), tmp_path)
    assert weights_path(tiny(chat_template="qwen3"), tmp_path) != base
    assert weights_path(tiny(context_length=2048), tmp_path) != base
    seeded = {"kind": "tiny_random", "architecture": "qwen2", "seed": 9}
    assert weights_path(tiny(weights=seeded), tmp_path) != base
