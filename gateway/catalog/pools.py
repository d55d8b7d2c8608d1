"""Capacity pools and what a chip-hour in each costs the operator.

An owned pool's chip-hour is the purchase price depreciated over its years (five by default) plus power
and hosting; a managed (rented, third-party) pool's chip-hour is the hourly fee paid to its owner.
A replica costs its chips' hourly cost; a replica that takes no whole chip (a CPU share) counts as one.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

HOURS_PER_YEAR = Decimal(24 * 365)


class ChipCost(BaseModel):
    """What one chip of a kind costs in a pool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    purchase_price: Decimal | None = Field(default=None, ge=0, description="Owned: price paid per chip.")
    depreciation_years: Decimal = Field(default=Decimal(5), gt=0, description="Owned: years to write it off.")
    power_and_hosting_per_hour: Decimal = Field(
        default=Decimal(0), ge=0, description="Owned: power, cooling and hosting per chip-hour."
    )
    hourly_fee: Decimal | None = Field(default=None, ge=0, description="Managed: fee per chip-hour.")


class Pool(BaseModel):
    """A source of capacity: the operator's own, or rented from a third party."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Name deployments refer to in `pool`.")
    kind: Literal["owned", "managed"] = Field(description="owned: bought hardware; managed: rented.")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="Currency of the costs.")
    chips: dict[str, ChipCost] = Field(
        default_factory=dict, description="Cost per chip kind (cpu, nvidia, ...)."
    )

    @model_validator(mode="after")
    def _costs_fit_the_kind(self) -> Pool:
        for chip, cost in self.chips.items():
            if self.kind == "owned" and cost.purchase_price is None:
                raise ValueError(f"owned pool {self.name!r}: chip {chip!r} needs purchase_price")
            if self.kind == "managed" and cost.hourly_fee is None:
                raise ValueError(f"managed pool {self.name!r}: chip {chip!r} needs hourly_fee")
        return self

    def chip_hour_cost(self, chip: str) -> Decimal:
        cost = self.chips.get(chip)
        if cost is None:
            return Decimal(0)
        if self.kind == "managed":
            return cost.hourly_fee or Decimal(0)
        purchase = cost.purchase_price or Decimal(0)
        return purchase / (cost.depreciation_years * HOURS_PER_YEAR) + cost.power_and_hosting_per_hour

    def replica_hour_cost(self, chip: str, chips_per_replica: float) -> Decimal:
        units = Decimal(str(chips_per_replica)) if chips_per_replica > 0 else Decimal(1)
        return self.chip_hour_cost(chip) * units
