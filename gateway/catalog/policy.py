"""How a model's requests are placed among its deployments (``routing:`` of a catalog entry)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PolicyName = Literal["own_first", "cheapest", "weighted", "ordered"]
ServiceTier = Literal["auto", "default", "flex", "scale", "priority"]
"""OpenAI's ``service_tier`` values; ``auto`` and ``default`` are the model's own SLO (``ttft_slo_s``)."""
NamedTier = Literal["flex", "scale", "priority"]


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
        "has no headroom (a request's `service_tier` may ask for another: `service_tiers`). None: only free "
        "slots count as headroom.",
    )
    service_tiers: dict[NamedTier, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="Other TTFT SLOs a request may ask for with OpenAI's `service_tier` (for example "
        "`{priority: 1, flex: 30}`): placement weighs the request's own SLO, and in a deployment's queue a "
        "tenant's requests go earliest deadline first (arrival plus SLO), so its priority requests pass its "
        "flex ones. A tier not listed is a 400; `auto` and `default` are `ttft_slo_s`.",
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

    @model_validator(mode="after")
    def _tiers_beside_a_default(self) -> Routing:
        if self.service_tiers and self.ttft_slo_s is None:
            raise ValueError(
                "service_tiers need ttft_slo_s, the SLO of the default tier they are ordered against"
            )
        return self

    def tier_slo_s(self, tier: ServiceTier | None) -> float | None:
        """The TTFT SLO of a request asking for ``tier`` (None: the model's own). Raises ``KeyError`` for a
        tier this model does not offer."""
        if tier is None or tier in ("auto", "default"):
            return self.ttft_slo_s
        for name, slo in self.service_tiers.items():
            if name == tier:
                return slo
        raise KeyError(tier)
