"""Chat templates of the model families the gateway serves, one Jinja file each, found by name.

Pure Python (no torch): the catalog validates template names with it, and the tiny-checkpoint builder
(``backends.model_sources``) writes a template and its tokens into the checkpoints it builds.

Each template renders exactly what the family's official Hugging Face template renders for plain-text
conversations (system, user and assistant turns, ``add_generation_prompt``), and where the header says so,
tools, tool calls and tool results; each file's header says where that format is documented. BLOOM has no
template of its own; ``bloom.jinja`` documents ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ChatTemplate:
    """A family's chat template and the tokens a checkpoint needs to use it as that family does.

    ``special_tokens`` are the template's markers: a checkpoint built here gets each as one special token
    (as in the family's own vocabulary), so the markers never split into pieces and decoding hides them.
    ``plain_tokens`` are added as single tokens that decoding keeps (DeepSeek-R1 and Qwen3's ``<think>``).
    ``stop_tokens`` end generation (the first is the tokenizer's end-of-sequence token).
    """

    name: str
    family: str
    bos_token: str | None
    stop_tokens: tuple[str, ...]
    special_tokens: tuple[str, ...] = ()
    plain_tokens: tuple[str, ...] = ()
    tool_parser: str | None = None
    """vLLM's tool parser for the calls this template renders (None: the template has no tool format)."""

    @property
    def eos_token(self) -> str:
        return self.stop_tokens[0]

    @property
    def path(self) -> Path:
        return TEMPLATE_DIR / f"{self.name}.jinja"

    def source(self) -> str:
        return self.path.read_text(encoding="utf-8")


_DEEPSEEK_MARKERS = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>")
_CHATML = ("<|im_start|>", "<|im_end|>")

TEMPLATES: dict[str, ChatTemplate] = {
    t.name: t
    for t in (
        ChatTemplate(
            name="llama3",
            family="llama",
            bos_token="<|begin_of_text|>",
            stop_tokens=("<|eot_id|>", "<|end_of_text|>"),
            special_tokens=(
                "<|begin_of_text|>",
                "<|end_of_text|>",
                "<|start_header_id|>",
                "<|end_header_id|>",
                "<|eot_id|>",
            ),
        ),
        ChatTemplate(
            name="qwen2_5",
            family="qwen",
            bos_token=None,
            stop_tokens=("<|im_end|>", "<|endoftext|>"),
            special_tokens=(*_CHATML, "<|endoftext|>"),
            # Single (non-special) tokens in Qwen's vocabulary, so decoding keeps them for the parser.
            plain_tokens=("<tool_call>", "</tool_call>"),
            tool_parser="hermes",
        ),
        ChatTemplate(
            name="qwen3",
            family="qwen",
            bos_token=None,
            stop_tokens=("<|im_end|>", "<|endoftext|>"),
            special_tokens=(*_CHATML, "<|endoftext|>"),
            plain_tokens=("<think>", "</think>"),
        ),
        ChatTemplate(
            name="deepseek_v2",
            family="deepseek",
            bos_token="<｜begin▁of▁sentence｜>",
            stop_tokens=("<｜end▁of▁sentence｜>",),
            special_tokens=_DEEPSEEK_MARKERS[:2],
        ),
        ChatTemplate(
            name="deepseek_v3",
            family="deepseek",
            bos_token="<｜begin▁of▁sentence｜>",
            stop_tokens=("<｜end▁of▁sentence｜>",),
            special_tokens=_DEEPSEEK_MARKERS,
        ),
        ChatTemplate(
            name="deepseek_r1",
            family="deepseek",
            bos_token="<｜begin▁of▁sentence｜>",
            stop_tokens=("<｜end▁of▁sentence｜>",),
            special_tokens=_DEEPSEEK_MARKERS,
            plain_tokens=("<think>", "</think>"),
        ),
        ChatTemplate(
            name="glm4",
            family="glm",
            bos_token=None,
            stop_tokens=("<|endoftext|>", "<|user|>", "<|observation|>"),
            special_tokens=(
                "<|endoftext|>",
                "[gMASK]",
                "<sop>",
                "<|system|>",
                "<|user|>",
                "<|assistant|>",
                "<|observation|>",
            ),
        ),
        ChatTemplate(
            name="yi",
            family="yi",
            bos_token="<|startoftext|>",
            stop_tokens=("<|im_end|>", "<|endoftext|>"),
            special_tokens=("<|startoftext|>", "<|endoftext|>", *_CHATML),
        ),
        ChatTemplate(
            name="bloom",
            family="bloom",
            bos_token="<s>",
            stop_tokens=("</s>",),
            special_tokens=("<s>", "</s>"),
        ),
    )
}


class UnknownChatTemplate(ValueError):
    """No template of that name ships with the gateway."""


def get_template(name: str) -> ChatTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        known = ", ".join(sorted(TEMPLATES))
        raise UnknownChatTemplate(f"unknown chat template {name!r}; known: {known}") from None
