"""Chat templates of the model families the gateway serves, one Jinja file each, found by name.

Pure Python (no torch): the catalog validates template names with it, and the tiny-checkpoint builder
(``backends.model_sources``) writes a template and its tokens into the checkpoints it builds.

Each template renders exactly what the family's official Hugging Face template renders for plain-text
conversations (system, user and assistant turns, ``add_generation_prompt``), and where ``renders_tools``
says so, tool definitions, tool calls and tool results; each file's header says where that format is
documented and where it departs from it. BLOOM has no template of its own; ``bloom.jinja`` documents ours.
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
    renders_tools: bool = False
    """The template renders ``tools``, assistant ``tool_calls`` and ``tool`` results (the family's format)."""
    tool_parser: str | None = None
    """vLLM's tool parser that reads the family's calls back from generated text (None: no parser reads
    them, so ``tool_choice: "auto"`` is refused; ``required`` and named calls need none)."""

    @property
    def eos_token(self) -> str:
        return self.stop_tokens[0]

    @property
    def path(self) -> Path:
        return TEMPLATE_DIR / f"{self.name}.jinja"

    def source(self) -> str:
        return self.path.read_text(encoding="utf-8")


_DEEPSEEK_MARKERS = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>")
# Single non-special tokens in DeepSeek-V3's vocabulary: decoding keeps them, so the tool parser sees them.
_DEEPSEEK_TOOL_TOKENS = (
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",
    "<｜tool▁sep｜>",
    "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>",
    "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>",
)
_CHATML = ("<|im_start|>", "<|im_end|>")
# Single (non-special) tokens in Qwen's vocabulary, so decoding keeps them for the parser.
_QWEN_TOOL_TOKENS = ("<tool_call>", "</tool_call>")

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
                # Llama 3.1's marker for built-in tool calls; vLLM's llama3_json parser requires it.
                "<|python_tag|>",
            ),
            renders_tools=True,
            tool_parser="llama3_json",
        ),
        ChatTemplate(
            name="qwen2_5",
            family="qwen",
            bos_token=None,
            stop_tokens=("<|im_end|>", "<|endoftext|>"),
            special_tokens=(*_CHATML, "<|endoftext|>"),
            plain_tokens=_QWEN_TOOL_TOKENS,
            renders_tools=True,
            tool_parser="hermes",
        ),
        ChatTemplate(
            name="qwen3",
            family="qwen",
            bos_token=None,
            stop_tokens=("<|im_end|>", "<|endoftext|>"),
            special_tokens=(*_CHATML, "<|endoftext|>"),
            plain_tokens=(*_QWEN_TOOL_TOKENS, "<think>", "</think>"),
            renders_tools=True,
            tool_parser="hermes",  # Qwen3's JSON calls are Qwen 2.5's (vLLM's qwen3_json is an alias)
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
            plain_tokens=_DEEPSEEK_TOOL_TOKENS,
            renders_tools=True,
            tool_parser="deepseek_v3",
        ),
        ChatTemplate(
            name="deepseek_r1",
            family="deepseek",
            bos_token="<｜begin▁of▁sentence｜>",
            stop_tokens=("<｜end▁of▁sentence｜>",),
            special_tokens=_DEEPSEEK_MARKERS,
            plain_tokens=(*_DEEPSEEK_TOOL_TOKENS, "<think>", "</think>"),
            renders_tools=True,
            tool_parser="deepseek_v3",
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
            renders_tools=True,  # no vLLM parser reads GLM-4's calls (glm4.jinja's header)
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
