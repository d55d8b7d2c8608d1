"""Capacity pools and what serving from each costs the operator.

Three kinds of pool, two figures each:

- ``owned``: bought hardware. Its **amortised** chip-hour (what the books report) is the purchase price
  depreciated over ``depreciation_years`` (five by default) plus power and hosting; its **marginal** cost
  (what placement decides on) is power alone, since the chip is paid for whether it serves or idles.
- ``managed`` per chip-hour: rented nodes. Both figures are the ``hourly_fee``, paid in billing periods
  (``billing_granularity_minutes``) for at least ``minimum_rental_minutes`` once rented.
- ``managed`` per token (``per_token``): another provider's API, a pool with no nodes. Both figures are its
  price per 1M input and output tokens; its rate limits bound what may be sent to it.

A replica costs its chips' hourly cost; a replica that takes no whole chip (a CPU share) counts as one.
A chip-hour becomes a cost per token through the tokens per second a replica serves (``tokens_per_second``
of the deployment): output tokens carry it, prompt tokens are counted free on chips (prefill is a small
share of a replica's time; an API prices them itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

HOURS_PER_YEAR = Decimal(24 * 365)
MILLION = Decimal(1_000_000)
POOL_NAME = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
"""A pool's name: a DNS label (it names Kubernetes worker groups and a Ray resource)."""
POOL_RESOURCE_PREFIX = "maas_pool_"


def pool_resource(pool: str) -> str:
    """The custom Ray resource a node of ``pool`` declares (one unit) and each replica placed there asks
    for a sliver of, so that a deployment's replicas land only on its pool's nodes."""
    return POOL_RESOURCE_PREFIX + pool


class ChipCost(BaseModel):
    """What one chip of a kind costs in a pool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    purchase_price: Decimal | None = Field(default=None, ge=0, description="Owned: price paid per chip.")
    depreciation_years: Decimal = Field(default=Decimal(5), gt=0, description="Owned: years to write it off.")
    power_and_hosting_per_hour: Decimal = Field(
        default=Decimal(0), ge=0, description="Owned: power, cooling and hosting per chip-hour."
    )
    power_per_hour: Decimal | None = Field(
        default=None,
        ge=0,
        description="Owned: the part of power_and_hosting_per_hour that serving adds (power drawn): the "
        "marginal chip-hour placement decides on. Default: all of power_and_hosting_per_hour.",
    )
    hourly_fee: Decimal | None = Field(default=None, ge=0, description="Managed: fee per chip-hour.")

    @model_validator(mode="after")
    def _power_within_power_and_hosting(self) -> ChipCost:
        if self.power_per_hour is not None and self.power_per_hour > self.power_and_hosting_per_hour:
            raise ValueError("power_per_hour is part of power_and_hosting_per_hour and cannot exceed it")
        return self


class PerTokenTerms(BaseModel):
    """A rented API's price and rate limits (a managed pool paid per token)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: Decimal = Field(ge=0, description="Price paid per 1M prompt tokens sent to it.")
    output_per_million: Decimal = Field(ge=0, description="Price paid per 1M completion tokens it returns.")
    requests_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="Its requests-per-minute limit (past it: 429); none: no limit.",
    )
    tokens_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="Its tokens-per-minute limit (past it: 429); none: no limit.",
    )


@dataclass(frozen=True)
class TokenCost:
    """Cost per 1M input and output tokens, in the pool's currency."""

    input_per_million: Decimal
    output_per_million: Decimal

    def of(self, input_tokens: int, output_tokens: int) -> Decimal:
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / MILLION


class Pool(BaseModel):
    """A source of capacity: the operator's own, or rented from a third party (by the chip-hour or token)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=POOL_NAME, description="Name deployments refer to in `pool` (lower case, digits, dashes)."
    )
    kind: Literal["owned", "managed"] = Field(description="owned: bought hardware; managed: rented.")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="Currency of the costs.")
    chips: dict[str, ChipCost] = Field(
        default_factory=dict, description="Cost per chip kind (cpu, nvidia, ...)."
    )
    billing_granularity_minutes: int | None = Field(
        default=None,
        ge=1,
        description="Managed per chip-hour: the billing period; a started period is paid whole. Default 60.",
    )
    minimum_rental_minutes: int | None = Field(
        default=None,
        ge=1,
        description="Managed per chip-hour: the shortest rental paid once a node is rented. Default: one "
        "billing period.",
    )
    per_token: PerTokenTerms | None = Field(
        default=None, description="Managed per token: a rented API's prices and rate limits (no chips)."
    )

    @model_validator(mode="after")
    def _costs_fit_the_kind(self) -> Pool:
        for chip, cost in self.chips.items():
            if self.kind == "owned" and cost.purchase_price is None:
                raise ValueError(f"owned pool {self.name!r}: chip {chip!r} needs purchase_price")
            if self.kind == "managed" and cost.hourly_fee is None:
                raise ValueError(f"managed pool {self.name!r}: chip {chip!r} needs hourly_fee")
            owned_only = ("purchase_price", "power_per_hour")
            if self.kind == "managed" and any(getattr(cost, f) is not None for f in owned_only):
                raise ValueError(
                    f"managed pool {self.name!r}: chip {chip!r} is rented: purchase_price and power_per_hour "
                    "are for owned pools"
                )
            if self.kind == "owned" and cost.hourly_fee is not None:
                raise ValueError(f"owned pool {self.name!r}: chip {chip!r} has no hourly_fee (it is bought)")
        rental = self.billing_granularity_minutes is not None or self.minimum_rental_minutes is not None
        if self.kind == "owned" and (rental or self.per_token is not None):
            raise ValueError(
                f"owned pool {self.name!r}: billing periods and per_token prices are for managed pools"
            )
        if self.per_token is not None and (self.chips or rental):
            raise ValueError(
                f"managed pool {self.name!r} is paid per token: it has no chips and no billing periods"
            )
        minimum = self.minimum_rental_minutes
        if minimum is not None and minimum < self.granularity_minutes:
            raise ValueError(
                f"managed pool {self.name!r}: minimum_rental_minutes {minimum} is shorter than one billing "
                f"period ({self.granularity_minutes} min)"
            )
        return self

    @property
    def granularity_minutes(self) -> int:
        return self.billing_granularity_minutes or 60

    @property
    def minimum_minutes(self) -> int:
        return self.minimum_rental_minutes or self.granularity_minutes

    def chip_hour_cost(self, chip: str) -> Decimal:
        """Amortised: what a chip-hour costs the books (depreciation + power and hosting, or the fee)."""
        cost = self.chips.get(chip)
        if cost is None:
            return Decimal(0)
        if self.kind == "managed":
            return cost.hourly_fee or Decimal(0)
        purchase = cost.purchase_price or Decimal(0)
        return purchase / (cost.depreciation_years * HOURS_PER_YEAR) + cost.power_and_hosting_per_hour

    def marginal_chip_hour_cost(self, chip: str) -> Decimal:
        """Marginal: what serving for one more chip-hour adds (owned: power alone; rented: the fee)."""
        cost = self.chips.get(chip)
        if cost is None:
            return Decimal(0)
        if self.kind == "managed":
            return cost.hourly_fee or Decimal(0)
        return cost.power_and_hosting_per_hour if cost.power_per_hour is None else cost.power_per_hour

    def replica_hour_cost(self, chip: str, chips_per_replica: float, *, marginal: bool = False) -> Decimal:
        """A replica-hour: amortised (the books), or ``marginal`` (what serving adds)."""
        hourly = self.marginal_chip_hour_cost(chip) if marginal else self.chip_hour_cost(chip)
        return hourly * _units(chips_per_replica)

    def token_cost(
        self, chip: str, chips_per_replica: float, tokens_per_second: float | None, *, marginal: bool
    ) -> TokenCost | None:
        """Cost per 1M tokens served from this pool (None: a chip-hour pool without a throughput)."""
        if self.per_token is not None:
            return TokenCost(self.per_token.input_per_million, self.per_token.output_per_million)
        if not tokens_per_second:
            return None
        hourly = self.marginal_chip_hour_cost(chip) if marginal else self.chip_hour_cost(chip)
        per_hour = Decimal(str(tokens_per_second)) * 3600
        return TokenCost(Decimal(0), hourly * _units(chips_per_replica) * MILLION / per_hour)

    def billed_seconds(self, held_s: float) -> float:
        """Seconds paid for a node held ``held_s``: whole billing periods, at least the minimum rental."""
        period = self.granularity_minutes * 60
        return float(max(self.minimum_minutes * 60, math.ceil(max(held_s, 0) / period - 1e-9) * period))

    def release_at(self, rented_at: float, now: float) -> float:
        """The earliest moment at or after ``now`` when a node rented at ``rented_at`` can be released
        without paying for time it will not use: the end of its minimum rental or of its current period."""
        period = self.granularity_minutes * 60
        held = max(now - rented_at, self.minimum_minutes * 60)
        return rented_at + math.ceil(held / period - 1e-9) * period


def _units(chips_per_replica: float) -> Decimal:
    return Decimal(str(chips_per_replica)) if chips_per_replica > 0 else Decimal(1)
