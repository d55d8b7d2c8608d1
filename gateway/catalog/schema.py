"""The model catalog (``models.yaml``): schema, loading, and errors that name the file and the field."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from backends.chat_templates import TEMPLATES
from backends.chips import BUILTIN_CHIPS, ChipKind, chip_table
from backends.registry import BackendNotFound, load_backend_class, validate_engine_options
from gateway.catalog.policy import Routing
from gateway.catalog.pools import POOL_NAME, Pool, TokenCost
from gateway.catalog.weights import Strict, TinyRandomWeights, Weights

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"
EXTENDED_RESOURCE = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
"""A Kubernetes extended resource name: a domain, a slash and a name (``nvidia.com/gpu``)."""


class CatalogError(ValueError):
    """The catalog file is missing, is not YAML, or breaks the schema; the message names file and field."""


class Autoscaling(Strict):
    """Ray Serve's autoscaling of a deployment's replicas, by requests in flight per replica."""

    min_replicas: int = Field(
        ge=0, le=1024, description="Fewest replicas; 0 scales an idle deployment to zero, freeing its chips."
    )
    max_replicas: int = Field(ge=1, le=1024, description="Most replicas (capacity checks count these).")
    target_ongoing_requests: float = Field(
        default=2, gt=0, description="Requests in flight per replica the autoscaler aims for."
    )
    upscale_delay_s: float = Field(default=30, ge=0, description="Load must stay high this long to add.")
    downscale_delay_s: float = Field(default=600, ge=0, description="Load must stay low this long to remove.")
    start_wait_s: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="How long a request waits for a replica to start while the deployment has none running "
        "(scaled to zero), with progress in the log, before it is answered 503 with Retry-After (the "
        "replica goes on starting). Default: the deployment's stall_timeout_s.",
    )

    @model_validator(mode="after")
    def _min_within_max(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}")
        return self

    def serve_config(self) -> dict[str, Any]:
        """Serve's ``autoscaling_config``: it starts at ``min_replicas``."""
        return {**self.model_dump(exclude={"start_wait_s"}), "initial_replicas": self.min_replicas}


class Deployment(Strict):
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
    pool: str = Field(default="own", pattern=POOL_NAME, description="Capacity pool this deployment runs in.")
    replicas: int = Field(default=1, ge=1, le=1024, description="Number of replicas (without autoscaling).")
    autoscaling: Autoscaling | None = Field(
        default=None,
        description="Scale replicas with load between min_replicas and max_replicas instead of a fixed "
        "`replicas` (Ray Serve's autoscaler; its requests go through Serve's handle, which it counts).",
    )
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
        ge=1,
        le=3600,
        description="A request whose replica sends nothing for this long (a hung replica) ends with 504. "
        "A replica generating a whole (non-streamed) answer says every quarter second that it progresses, "
        "so a long answer is not cut.",
    )
    tokens_per_second: float | None = Field(
        default=None,
        gt=0,
        description="Output tokens per second one replica serves at full load: turns its pool's chip-hour "
        "cost into a cost per token. Needed where placement compares costs (routing cheapest, or own_first "
        "among rented deployments) in a catalog that declares pools.",
    )
    weight: float | None = Field(
        default=None,
        gt=0,
        description="routing weighted: this deployment's share of requests, relative to the others' "
        "(default 1).",
    )

    @property
    def max_replicas(self) -> int:
        """The most replicas it runs: ``replicas``, or autoscaling's ``max_replicas``."""
        return self.autoscaling.max_replicas if self.autoscaling is not None else self.replicas

    @property
    def capacity(self) -> int:
        """Requests this deployment's replicas take at once (at most, when autoscaled)."""
        return self.max_replicas * self.max_ongoing_requests

    @property
    def queue_limit(self) -> int:
        return self.capacity if self.max_queued_requests is None else self.max_queued_requests

    @property
    def enforces_constraints(self) -> bool:
        """Its backend enforces response_format and forced tool choices: vLLM's constrained decoding, or
        an upstream declared to (``openai_upstream`` option ``structured_outputs``)."""
        if self.backend in CONSTRAINED_BACKENDS:
            return True
        return self.backend == "openai_upstream" and self.engine.get("structured_outputs") is True

    def reads_auto_tool_calls(self, tool_format: str | None) -> bool:
        """Its backend finds the calls a model writes on its own (``tool_choice: "auto"``): vLLM with the
        model's tool parser (``tool_format``), or an upstream declared to (``tool_choice_auto``)."""
        if self.backend in AUTO_TOOL_BACKENDS:
            return tool_format is not None
        return self.backend == "openai_upstream" and self.engine.get("tool_choice_auto") is True

    @property
    def start_wait_s(self) -> float | None:
        """How long a request waits for a replica while none runs (None: it never scales to zero)."""
        if self.autoscaling is None or self.autoscaling.min_replicas > 0:
            return None
        return self.autoscaling.start_wait_s or self.stall_timeout_s

    engine: dict[str, Any] = Field(
        default_factory=dict, description="Engine options, validated by the backend's own schema."
    )

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> Deployment:
        if self.autoscaling is not None and "replicas" in self.model_fields_set:
            raise ValueError("set replicas or autoscaling, not both (autoscaling starts at min_replicas)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _default_chip_count(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("chips_per_replica") is None:
            chip = data.get("chip", "cpu")
            engine = data.get("engine") or {}
            parallel = engine.get("tensor_parallel_size", 1) if isinstance(engine, dict) else 1
            data = {**data, "chips_per_replica": 0 if chip == "cpu" else parallel}
        return data


class ChipSpec(Strict):
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
    device_plugin_resource: str | None = Field(
        default=None,
        max_length=253,
        pattern=EXTENDED_RESOURCE,
        description="Kubernetes extended resource its device plugin advertises per chip (e.g. "
        "vendor.com/npu): what `maas deploy render` asks for in the worker pods of this kind.",
    )

    def kind(self) -> ChipKind:
        return ChipKind(**self.model_dump())  # the same fields; Ray never assigns devices for these


class Pricing(Strict):
    """What a tenant pays for this model."""

    input_per_million: Decimal = Field(default=Decimal(0), ge=0, description="Price per 1M prompt tokens.")
    output_per_million: Decimal = Field(
        default=Decimal(0), ge=0, description="Price per 1M completion tokens."
    )
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code.")


CONSTRAINED_BACKENDS = frozenset({"vllm", "transformers"})
"""Backends that enforce JSON schemas while decoding (vLLM's structured outputs; xgrammar's matcher in the
transformers engine)."""
AUTO_TOOL_BACKENDS = frozenset({"vllm"})
"""Backends that read the calls a model writes on its own with the model's tool parser (vLLM's)."""
"""Backends whose engine enforces response_format and forced tool choices (vLLM's structured outputs)."""


class ModelEntry(Strict):
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
    task: Literal["chat", "embed", "rerank"] = Field(
        default="chat",
        description="What the model serves: chat (/v1/chat/completions, /v1/completions), embed "
        "(/v1/embeddings) or rerank (/v1/rerank, a cross-encoder).",
    )
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
        min_length=1,
        description="Where the model runs: every deployment is served, each on its own chip kind and "
        "pool; each request is placed among them by `routing`.",
    )
    routing: Routing = Field(
        default_factory=Routing, description="How requests are placed among the deployments."
    )

    def deployment_names(self) -> list[str]:
        """Each deployment's name: the first is the model's own (its Serve application keeps its name when
        deployments are added), the others ``<model>@<pool>``, numbered where a pool holds several."""
        names = [self.name]
        for j, deployment in enumerate(self.deployments[1:], start=1):
            name = f"{self.name}@{deployment.pool}"
            names.append(name if name not in names else f"{name}.{j}")
        return names

    @property
    def constrained_decoding(self) -> bool:
        """Some deployment enforces JSON schemas (``Deployment.enforces_constraints``): requests that need
        it are placed on those alone."""
        return any(d.enforces_constraints for d in self.deployments)

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
        if self.routing.policy != "weighted" and any(d.weight is not None for d in self.deployments):
            raise ValueError(f"deployment weights apply to routing weighted, not {self.routing.policy}")
        if self.task != "chat" and (self.reasoning is not None or self.pricing.output_per_million):
            raise ValueError(
                f"a {self.task} model generates no text: reasoning and pricing.output_per_million do not "
                "apply (its tokens are billed as prompt tokens at pricing.input_per_million)"
            )
        return self


class Catalog(Strict):
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
    def _costs_known_where_placement_compares_them(self) -> Catalog:
        if not self.pools:
            return self  # costs are not tracked: placement goes by load and order alone
        for model in self.models:
            if len(model.deployments) < 2 or model.routing.policy not in ("cheapest", "own_first"):
                continue
            for j, deployment in enumerate(model.deployments):
                pool = self.pool(deployment.pool)
                compared = model.routing.policy == "cheapest" or (pool is not None and pool.kind != "owned")
                if compared and self.token_cost(deployment, marginal=True) is None:
                    raise ValueError(
                        f"model {model.name!r}: deployments[{j}] in pool {deployment.pool!r} needs "
                        f"tokens_per_second (routing {model.routing.policy} compares its cost per token)"
                    )
        return self

    def token_cost(self, deployment: Deployment, *, marginal: bool) -> TokenCost | None:
        """A deployment's cost per 1M tokens, marginal (placement) or amortised (books); None: unknown."""
        pool = self.pool(deployment.pool)
        if pool is None:
            return None
        return pool.token_cost(
            deployment.chip, deployment.chips_per_replica, deployment.tokens_per_second, marginal=marginal
        )

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
    for tag in (".gguf_package", ".zip_package", ".local", ".huggingface", ".tiny_random"):
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
                serves_task = model.task == "chat" or hasattr(load_backend_class(deployment.backend), "pool")
            except BackendNotFound as exc:
                raise CatalogError(f"{where}.backend: {exc}") from None
            except ValidationError as exc:
                lines = [f"{where}.engine: invalid options for backend {deployment.backend!r}"]
                for err in exc.errors():
                    lines.append(f"  engine.{_field_path(tuple(err['loc']))}: {err['msg']}")
                raise CatalogError("\n".join(lines)) from None
            if not serves_task:
                raise CatalogError(
                    f"{where}.backend: backend {deployment.backend!r} does not serve {model.task} models"
                )
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
