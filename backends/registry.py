"""Backends found by name: built-ins imported lazily, third-party ones through an entry-point group.

A backend module exposes a class with ``Options`` (a pydantic model of its engine options) and
``from_spec(spec) -> Backend``. A vendor adds a chip by publishing a package with an entry point in the
``maas.backends`` group that names such a class; nothing in the gateway changes.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Protocol

from pydantic import BaseModel

from backends.base import Backend, ModelSpec

ENTRY_POINT_GROUP = "maas.backends"

BUILTIN: dict[str, str] = {
    "vllm": "backends.vllm_backend:VLLMBackend",
    "openai_upstream": "backends.openai_upstream:OpenAIUpstreamBackend",
    "transformers": "backends.transformers_backend:TransformersBackend",
}


class BackendNotFound(LookupError):
    """No built-in or installed backend has this name."""


class BackendClass(Protocol):
    Options: type[BaseModel]

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> Backend: ...


def available_backends() -> list[str]:
    names = set(BUILTIN)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


@cache
def load_backend_class(name: str) -> BackendClass:
    """Import the backend class registered under ``name``, or named directly as ``module:Class``."""
    target = name if ":" in name else BUILTIN.get(name)
    if target is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                target = ep.value
                break
    if target is None:
        raise BackendNotFound(f"unknown backend {name!r}; available: {', '.join(available_backends())}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls: BackendClass = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise BackendNotFound(f"backend {name!r} cannot be loaded from {target!r}: {exc}") from None
    return cls


def validate_engine_options(name: str, options: dict[str, Any]) -> BaseModel:
    """Validate a deployment's ``engine`` mapping with the backend's own schema."""
    return load_backend_class(name).Options.model_validate(options)
