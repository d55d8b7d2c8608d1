"""The vLLM backend's engine arguments come from the catalog, and a vendor chip without vLLM's platform
plugin is a clear error before vLLM is imported; a float32 MLA model on the CPU gets an attention backend that
loads it on every x86 CPU."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

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


@pytest.mark.parametrize(
    ("chip", "engine", "uni"),
    [
        ("cpu", {}, True),
        ("cpu", {"tensor_parallel_size": 2}, False),
        ("cpu", {"cpu_reserved_cores": 1}, False),
        ("nvidia", {}, False),
    ],
)
def test_a_one_rank_cpu_engine_runs_its_worker_in_the_engine_core_process(
    chip: str, engine: dict[str, object], uni: bool
) -> None:
    # Several ranks or reserved cores need vLLM's multiprocess executor to bind each rank's OpenMP threads;
    # on CUDA vLLM picks its executor itself.
    kwargs = VLLMBackend.from_spec(spec(chip, **engine)).engine_kwargs()
    assert (kwargs.get("distributed_executor_backend") == "uni") is uni


def test_context_length_is_the_default_max_model_len() -> None:
    assert VLLMBackend.from_spec(spec("cpu")).engine_kwargs()["max_model_len"] == 4096


async def test_ascend_without_the_vllm_ascend_plugin_says_what_to_install() -> None:
    backend = VLLMBackend.from_spec(spec("ascend"))
    with pytest.raises(ChipUnavailable, match=r"vllm-ascend.*vllm\.platform_plugins"):
        await backend.start()


def checkpoint(tmp_path: Path, **config: object) -> str:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path)


def cpu_spec(weights_path: str, **engine: object) -> ModelSpec:
    return dataclasses.replace(spec("cpu", **engine), weights_path=weights_path)


def test_a_float32_mla_model_on_the_cpu_asks_for_the_reference_mla_backend(tmp_path: Path) -> None:
    mla = checkpoint(tmp_path, model_type="deepseek_v3", kv_lora_rank=512)
    kwargs = VLLMBackend.from_spec(cpu_spec(mla, dtype="float32")).engine_kwargs()
    assert kwargs["attention_backend"] == "CPU_MLA"


@pytest.mark.parametrize(
    ("config", "chip", "dtype"),
    [
        ({"model_type": "deepseek_v3", "kv_lora_rank": 512}, "cpu", "bfloat16"),  # AMX takes bf16 weights
        ({"model_type": "deepseek_v3", "kv_lora_rank": 512}, "cpu", "auto"),  # vLLM casts fp32 down itself
        ({"model_type": "llama"}, "cpu", "float32"),  # not MLA
        ({"model_type": "deepseek_v2", "kv_lora_rank": None}, "cpu", "float32"),  # V2-Lite style, no MLA
        ({"model_type": "deepseek_v3", "kv_lora_rank": 512}, "nvidia", "float32"),  # vLLM's choice on CUDA
    ],
)
def test_other_deployments_keep_vllms_own_attention_choice(
    tmp_path: Path, config: dict[str, object], chip: str, dtype: str
) -> None:
    folder = checkpoint(tmp_path, **config)
    model = dataclasses.replace(spec(chip, dtype=dtype), weights_path=folder)
    assert "attention_backend" not in VLLMBackend.from_spec(model).engine_kwargs()


def test_the_catalogs_attention_backend_wins(tmp_path: Path) -> None:
    mla = checkpoint(tmp_path, model_type="deepseek_v3", kv_lora_rank=512)
    kwargs = VLLMBackend.from_spec(
        cpu_spec(mla, dtype="float32", attention_backend="AMX_MLA")
    ).engine_kwargs()
    assert kwargs["attention_backend"] == "AMX_MLA"


def test_an_attention_backend_that_is_not_a_name_is_refused_by_the_catalog_schema() -> None:
    with pytest.raises(ValueError, match="attention_backend"):
        VLLMBackend.from_spec(spec("cpu", attention_backend="cpu_mla; rm -rf"))


def test_on_a_cpu_with_amx_vllm_takes_the_reference_mla_backend_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """vLLM's own selector, on a CPU that reports AMX tiles: by default it picks AMX_MLA (which cannot load
    float32 weights); asked for CPU_MLA, as the backend asks for a float32 MLA model, it takes CPU_MLA."""
    torch = pytest.importorskip("torch")
    cpu = pytest.importorskip("vllm.platforms.cpu")
    from vllm.v1.attention.backends.registry import AttentionBackendEnum
    from vllm.v1.attention.selector import AttentionSelectorConfig

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    monkeypatch.setattr(cpu.CpuPlatform, "get_cpu_architecture", classmethod(lambda cls: cpu.CpuArchEnum.X86))
    mla = AttentionSelectorConfig(
        head_size=576, dtype=torch.float32, kv_cache_dtype=None, block_size=16, use_mla=True
    )
    choose = cpu.CpuPlatform.get_attn_backend_cls
    assert choose(None, mla) == AttentionBackendEnum.AMX_MLA.get_path()
    assert choose(AttentionBackendEnum["CPU_MLA"], mla) == AttentionBackendEnum.CPU_MLA.get_path()
