"""How a model's requests are placed among its deployments (``routing:`` of a catalog entry)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PolicyName = Literal["own_first", "cheapest", "weighted", "ordered"]


class Routing(BaseModel):
    """A model's placement policy; ``routing: cheapest`` is short for ``routing: {policy: cheapest}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: PolicyName = Field(
        default="own_first",
        description="own_first: owned deployments while they have headroom, then the cheapest of the rest; "
        "cheapest: lowest marginal cost per token among deployments with headroom; weighted: split by each "
        "deployment's `weight`; ordered: the first deployment with headroom, in catalog order.",
    )
    ttft_slo_s: float | None = Field(
        default=None,
        gt=0,
        description="Time to first token this model promises: a deployment whose predicted TTFT is above it "
        "has no headroom (a tenant's own SLO overrides it). None: only free slots count as headroom.",
    )
    return_ratio: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Hysteresis: once a deployment was skipped for a predicted TTFT above the SLO, requests "
        "queue on it again only when the prediction is below this fraction of the SLO (a free slot always "
        "takes a request at once: that is the drain back).",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"policy": data} if isinstance(data, str) else data
