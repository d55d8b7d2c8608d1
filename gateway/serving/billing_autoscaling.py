"""Ray Serve autoscaling for a deployment on rented chip-hours: replicas go only at billing boundaries.

A managed pool bills a rented node by whole periods (``billing_granularity_minutes``) and for at least
``minimum_rental_minutes``. Serve's own policy removes a replica ``downscale_delay_s`` after its load
drops, whatever that replica has already been billed for; giving it back a minute into a paid hour wastes
the rest of the hour, and renting again at the next pulse pays a new minimum.

``BillingBoundaryPolicy`` is Serve's default policy (replicas sized to requests in flight per replica,
``replica_queue_length_autoscaling_policy``) with one change: a scale-down happens only when it is due,
i.e. the lower count has been wanted for ``downscale_delay_s`` and a replica to be removed is within one
decision of the end of its minimum rental or of its current billing period. Those whose periods end
first go, together. Serve's own ``downscale_delay_s`` is set to 0 for such a deployment (this policy
holds the delay, so Serve's does not start counting only after a boundary, which would pay a period
more). Scale-up is Serve's (from zero at once, else after ``upscale_delay_s``).

It runs in Serve's controller, which imports it by path (``policy_config``) with the pool's terms as
keyword arguments; its memory (when each replica was rented, since when a lower count is wanted) lives
in Serve's policy state. Replicas in an own pool, or with a per-token price, keep Serve's policy.
"""

from __future__ import annotations

import math
import time
from typing import Any

RENTED_AT = "maas_rented_at"
"""Policy state: when each replica held now was rented (wall clock, oldest first)."""
LOWER_SINCE = "maas_lower_since"
"""Policy state: since when fewer replicas than are held have been wanted (None: not wanted)."""
DECISION_S = 1.0
"""A release falls due within this much of a boundary (Serve's controller decides about every 0.1 s)."""


def release_at(rented_at: float, now: float, period_s: float, minimum_s: float) -> float:
    """The first moment at or after ``now`` when a replica rented at ``rented_at`` can go without paying
    for time it will not use: the end of its minimum rental or of its current period."""
    held = max(now - rented_at, minimum_s)
    return rented_at + math.ceil(held / period_s - 1e-9) * period_s


def releasable(rented_at: list[float], now: float, period_s: float, minimum_s: float) -> list[int]:
    """Indices of the replicas whose boundary is now (within ``DECISION_S``), earliest boundary first."""
    due = sorted((release_at(t, now, period_s, minimum_s), i) for i, t in enumerate(rented_at))
    return [i for boundary, i in due if boundary - now < DECISION_S]


class BillingBoundaryPolicy:
    """Serve's custom autoscaling policy for one chip-hour deployment (see the module's text)."""

    def __init__(self, period_s: float, minimum_s: float, downscale_delay_s: float) -> None:
        self.period_s = period_s
        self.minimum_s = minimum_s
        self.downscale_delay_s = downscale_delay_s

    def __call__(self, ctx: Any) -> tuple[float, dict[str, Any]]:
        from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy

        wanted, _ = replica_queue_length_autoscaling_policy(ctx)
        now = ctx.current_time if ctx.current_time is not None else time.time()
        target = int(ctx.target_num_replicas)
        return self.decide(float(wanted), target, dict(ctx.policy_state), now, ctx.last_scale_up_time)

    def decide(
        self,
        wanted: float,
        target: int,
        state: dict[str, Any],
        now: float,
        scaled_up_at: float | None = None,
    ) -> tuple[float, dict[str, Any]]:
        """Replicas to run, from what Serve's policy ``wanted``, the ``target`` held and the memory;
        ``scaled_up_at``: when Serve last added replicas (their rental, and its bill, starts then, though
        Serve calls no custom policy while a deployment scales up from zero)."""
        rented: list[float] = list(state.get(RENTED_AT, []))
        del rented[target:]  # fewer held than remembered: Serve removed some (a failed start, a bound)
        since = scaled_up_at if scaled_up_at is not None and scaled_up_at <= now else now
        rented += [since] * (target - len(rented))  # new ones: rented when Serve added them
        state[RENTED_AT] = rented
        want = math.ceil(wanted)
        if want >= target:
            state[LOWER_SINCE] = None
            return wanted, state
        lower_since: float | None = state.get(LOWER_SINCE)
        if lower_since is None:
            lower_since = state[LOWER_SINCE] = now
        if now - lower_since < self.downscale_delay_s:
            return target, state
        due = releasable(rented, now, self.period_s, self.minimum_s)[: target - want]
        if not due:
            return target, state
        state[RENTED_AT] = [t for i, t in enumerate(rented) if i not in due]
        state[LOWER_SINCE] = None if target - len(due) <= want else lower_since
        return target - len(due), state


def policy_config(period_minutes: int, minimum_minutes: int, downscale_delay_s: float) -> dict[str, Any]:
    """Serve's ``autoscaling_config["policy"]`` for a deployment on chip-hours billed so."""
    return {
        "policy_function": f"{__name__}:{BillingBoundaryPolicy.__name__}",
        "policy_kwargs": {
            "period_s": period_minutes * 60.0,
            "minimum_s": minimum_minutes * 60.0,
            "downscale_delay_s": downscale_delay_s,
        },
    }
