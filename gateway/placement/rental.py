"""When to rent chip-hour nodes for a spill and when to give them back: a pure planner, the clock passed in.

Demand is the **overflow**: requests in flight or waiting, all deployments together, beyond what the
owned deployments take at once. Rent when the overflow has needed more rented replicas than are held for
``up_delay_s`` (sized to the overflow, with ``headroom``, in one action); release only when the largest
overflow of the last ``down_delay_s`` fits in fewer replicas, and only at a billing boundary (the end of
the minimum rental or of the current period), so a node is never given back while time on it is paid.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from gateway.catalog.pools import Pool


@dataclass(frozen=True, slots=True)
class Rental:
    """One rented replica: when it was rented (billing starts) and when it is ready to serve."""

    rented_at: float
    ready_at: float


@dataclass(frozen=True, slots=True)
class RentalPlan:
    rent: int
    """Replicas to rent now."""
    release: tuple[int, ...]
    """Indices, into the rentals passed in, of replicas to release now."""


class RentalPlanner:
    """Sizes a chip-hour deployment in a managed pool to the overflow of the owned ones; ``plan`` is called
    every ``tick_s`` (a release falls due within a tick of its billing boundary)."""

    def __init__(
        self,
        pool: Pool,
        slots_per_replica: int,
        max_replicas: int,
        *,
        up_delay_s: float = 10.0,
        down_delay_s: float = 45.0,
        headroom: float = 1.15,
        tick_s: float = 1.0,
    ) -> None:
        if pool.kind != "managed" or pool.per_token is not None:
            raise ValueError(f"pool {pool.name!r} is not rented by the chip-hour")
        self.pool = pool
        self.slots_per_replica = slots_per_replica
        self.max_replicas = max_replicas
        self.up_delay_s = up_delay_s
        self.down_delay_s = down_delay_s
        self.headroom = headroom
        self.tick_s = tick_s
        self._short_since: float | None = None
        self._recent: deque[tuple[float, float]] = deque()  # (time, overflow), overflow falling

    def wanted(self, overflow: float) -> int:
        return min(self.max_replicas, math.ceil(max(overflow, 0.0) * self.headroom / self.slots_per_replica))

    def plan(self, now: float, overflow: float, rentals: list[Rental]) -> RentalPlan:
        recent = self._recent
        while recent and recent[-1][1] <= overflow:
            recent.pop()
        recent.append((now, overflow))
        while recent[0][0] < now - self.down_delay_s:
            recent.popleft()
        held = len(rentals)
        wanted = self.wanted(overflow)
        if wanted > held:
            if self._short_since is None:
                self._short_since = now
            if now - self._short_since >= self.up_delay_s:
                self._short_since = None
                return RentalPlan(wanted - held, ())
            return RentalPlan(0, ())
        self._short_since = None
        peak = recent[0][1]  # the largest overflow of the last down_delay_s
        keep = min(self.max_replicas, math.ceil(peak / self.slots_per_replica))
        if keep >= held or rentals and now - min(r.rented_at for r in rentals) < self.down_delay_s:
            return RentalPlan(0, ())
        due = sorted(
            (i for i, r in enumerate(rentals) if self.pool.release_at(r.rented_at, now) - now < self.tick_s),
            key=lambda i: rentals[i].rented_at,
        )
        return RentalPlan(0, tuple(due[: held - keep]))
