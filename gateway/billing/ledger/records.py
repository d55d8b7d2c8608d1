"""What the ledger stores and what its queries return."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

NANOS = Decimal(1_000_000_000)

GroupBy = Literal["model", "tenant", "key", "chip", "pool", "deployment", "day", "hour", "minute"]
TIME_GROUPS = ("day", "hour", "minute")  # UTC buckets of created_at

GROUP_COLUMNS: dict[str, str] = {
    "model": "model",
    "tenant": "tenant",
    "key": "key_id",
    "chip": "chip",
    "pool": "pool",
    "deployment": "deployment",  # a model's deployment (``ModelEntry.deployment_names``)
    "endpoint": "endpoint",  # chat.completions, completions, embeddings, rerank, score
}


@dataclass(frozen=True)
class UsageRecord:
    """One request attempt, whatever its outcome. Never holds prompts, completions or key secrets."""

    request_id: str
    idempotency_key: str | None
    tenant: str
    key_id: str
    model: str
    deployment: str
    chip: str
    pool: str
    endpoint: str
    stream: bool
    status: str  # ok | error | cancelled
    error_type: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    ttft_s: float | None
    duration_s: float
    currency: str
    price_input_per_million: str  # the prices in effect, as exact decimals
    price_output_per_million: str
    charge_nanos: int  # what the tenant pays, in 1e-9 of the currency
    created_at: float
    usage_estimated: bool = False  # token counts are the gateway's estimate (an upstream sent no usage)
    attempts: int = 1  # deployments the request was sent to before one answered (or the last failed)


def charge_nanos(
    prompt_tokens: int, completion_tokens: int, input_per_million: Decimal, output_per_million: Decimal
) -> int:
    """Exact charge in nano-units: tokens × price per 1M tokens, rounded half up once."""
    amount = (prompt_tokens * input_per_million + completion_tokens * output_per_million) / 1_000_000
    return int((amount * NANOS).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class UsageQuery:
    since: float | None = None
    until: float | None = None
    group_by: tuple[str, ...] = ("model",)
    tenant: str | None = None  # set: only this tenant's records


@dataclass(frozen=True)
class UsageRow:
    group: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    charge_nanos: int = 0
    currency: str = ""

    @property
    def cost(self) -> float:
        return self.charge_nanos / 1e9

    def as_dict(self) -> dict[str, object]:
        """The row as the usage API and `maas usage` show it: its groups, then ``ROW_COLUMNS``."""
        return {
            **self.group,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "currency": self.currency,
        }


ROW_COLUMNS = ("requests", "prompt_tokens", "completion_tokens", "cost", "currency")
