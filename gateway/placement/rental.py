"""When to rent chip-hour nodes for a spill and when to give them back: a pure planner, the clock passed in.

Demand is the **overflow**: the concurrency the model's demand needs (its arrival rate times the time a
request holds a slot) beyond what the owned deployments take at once. A queue is not demand: it grows
while rented replicas start, and sizing to it would rent twice.

- Rent when the overflow has needed more rented replicas than are held for all of ``up_delay_s``, sized
  to the overflow then (with ``headroom``) in one action; more only once those are serving and the
  shortfall has lasted ``settle_s / 2`` (a pulse's noise must not take a second action).
- Release all once the overflow has been gone for ``down_delay_s``; some, once the largest overflow of
  the last ``settle_s`` fits in fewer. Only at a billing boundary (the end of the minimum rental or of
  the current period); replicas released together go in one action at the first of their boundaries, so
  each gives up at most one billing period.
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
        settle_s: float = 300.0,
        headroom: float = 1.3,
        tick_s: float = 1.0,
        rent_above: float = 0.5,
    ) -> None:
        if pool.kind != "managed" or pool.per_token is not None:
            raise ValueError(f"pool {pool.name!r} is not rented by the chip-hour")
        self.pool = pool
        self.slots_per_replica = slots_per_replica
        self.max_replicas = max_replicas
        self.up_delay_s = up_delay_s
        self.down_delay_s = down_delay_s
        self.settle_s = settle_s
        self.headroom = headroom
        self.tick_s = tick_s
        self.rent_above = rent_above
        self._short_since: float | None = None  # since when the overflow needs more than is held
        self._recent: deque[tuple[float, float]] = deque()  # (time, overflow), overflow falling: the peak
        self._settled: deque[tuple[float, float]] = deque()  # the same over settle_s

    def wanted(self, overflow: float) -> int:
        """Replicas for ``overflow``: none below ``rent_above`` of a replica's slots (a spill that small
        goes to a per-token API), else enough with ``headroom``."""
        if overflow < self.rent_above * self.slots_per_replica:
            return 0
        return min(self.max_replicas, math.ceil(overflow * self.headroom / self.slots_per_replica))

    def plan(self, now: float, overflow: float, rentals: list[Rental]) -> RentalPlan:
        """Replicas to rent and to release now, given the overflow now and the replicas held (rented,
        ready or still starting)."""
        peak = _window(self._recent, now, overflow, self.down_delay_s)
        settled_peak = _window(self._settled, now, overflow, self.settle_s)
        held = len(rentals)
        wanted = self.wanted(overflow)
        starting = any(r.ready_at > now for r in rentals)
        if wanted > held and not starting:  # what is starting is not seen serving yet: wait for it
            if self._short_since is None:
                self._short_since = now
            delay = self.up_delay_s if not held else self.settle_s / 2
            if now - self._short_since >= delay:  # short for all of that time
                self._short_since = None
                return RentalPlan(wanted - held, ())
            return RentalPlan(0, ())
        self._short_since = None
        # all go once the overflow is gone for down_delay_s; some, once it was lower for settle_s
        keep = 0 if self.wanted(peak) == 0 else self.wanted(settled_peak)
        if keep >= held or rentals and now - max(r.rented_at for r in rentals) < self.down_delay_s:
            return RentalPlan(0, ())
        boundaries = sorted((self.pool.release_at(r.rented_at, now), i) for i, r in enumerate(rentals))
        if boundaries[0][0] - now >= self.tick_s:
            return RentalPlan(0, ())  # the first boundary is not here yet
        # those whose period ends next go together, in one action (each gives up less than one period)
        period = self.pool.granularity_minutes * 60
        due = [i for boundary, i in boundaries if boundary - now < period]
        return RentalPlan(0, tuple(sorted(due[: held - keep])))


def _window(samples: deque[tuple[float, float]], now: float, value: float, span_s: float) -> float:
    """Add ``value`` at ``now`` and return the largest value of the last ``span_s``."""
    while samples and samples[-1][1] <= value:
        samples.pop()
    samples.append((now, value))
    while samples[0][0] < now - span_s:
        samples.popleft()
    return samples[0][1]
