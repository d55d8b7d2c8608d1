"""The vLLM backend's engine arguments come from the catalog, and a vendor chip without vLLM's platform
plugin is a clear error before vLLM is imported."""

from __future__ import annotations

import pytest

from backends.base import ModelSpec
from backends.chips import BUILTIN_CHIPS, ChipUnavailable
from backends.vllm_backend import VLLMBackend


def spec(chip: str, **engine: object) -> ModelSpec:
    return ModelSpec(
        name="m",
        weights_path="/models/m",
        context_length=4096,
        chip=chip,
        engine=engine,
        chip_kind=BUILTIN_CHIPS[chip],
        chips_per_replica=0 if chip == "cpu" else 1,
    )


def test_catalog_engine_options_become_vllm_engine_arguments() -> None:
    backend = VLLMBackend.from_spec(
        spec(
            "nvidia",
            tensor_parallel_size=4,
            dtype="bfloat16",
            max_model_len=2048,
            kv_cache_gib=1.5,
            quantization="fp8",
            gpu_memory_utilization=0.85,
        )
    )
    kwargs = backend.engine_kwargs()
    assert kwargs["tensor_parallel_size"] == 4
    assert kwargs["dtype"] == "bfloat16"
    assert kwargs["max_model_len"] == 2048
    assert kwargs["kv_cache_memory_bytes"] == int(1.5 * 2**30)
    assert kwargs["quantization"] == "fp8"
    assert kwargs["gpu_memory_utilization"] == 0.85
    assert kwargs["served_model_name"] == "m"


def test_context_length_is_the_default_max_model_len() -> None:
    assert VLLMBackend.from_spec(spec("cpu")).engine_kwargs()["max_model_len"] == 4096


async def test_ascend_without_the_vllm_ascend_plugin_says_what_to_install() -> None:
    backend = VLLMBackend.from_spec(spec("ascend"))
    with pytest.raises(ChipUnavailable, match=r"vllm-ascend.*vllm\.platform_plugins"):
        await backend.start()
