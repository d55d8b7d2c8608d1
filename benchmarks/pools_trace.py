"""A seeded, bursty day of traffic for the pools simulator: a daily base load between 25 % and 85 % of
the own pool's capacity, a dozen pulses of 1.5-4x that base lasting 2-20 minutes, three TTFT SLO tiers."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

TIERS_S = (1.0, 3.0, 30.0)  # TTFT SLOs: interactive, standard, batch
TIER_SHARES = (0.5, 0.3, 0.2)


@dataclass(frozen=True, slots=True)
class Pulse:
    start: float
    end: float
    multiplier: float


@dataclass(frozen=True, slots=True)
class Shape:
    """The sizes of requests and how fast the own pool serves them."""

    input_mean: float = 500.0
    output_mean: float = 200.0
    sigma: float = 0.6  # of the lognormal sizes
    stream_tokens_per_s: float = 25.0  # per request, on own and rented chips
    prefill_tokens_per_s: float = 10_000.0
    first_token_s: float = 0.15  # scheduling and the first decode step

    def hold_s(self, input_tokens: int, output_tokens: int) -> float:
        """Seconds a request holds a slot on own or rented chips."""
        return self.prefill_s(input_tokens) + output_tokens / self.stream_tokens_per_s

    def prefill_s(self, input_tokens: int) -> float:
        return self.first_token_s + input_tokens / self.prefill_tokens_per_s


@dataclass(frozen=True, slots=True)
class Trace:
    duration_s: float
    pulses: tuple[Pulse, ...]
    times: list[float]
    tiers: list[int]
    inputs: list[int]
    outputs: list[int]
    capacity_rps: float  # requests per second the own pool serves at full load


def _sizes(rng: random.Random, mean: float, sigma: float, low: int, high: int) -> int:
    mu = math.log(mean) - sigma * sigma / 2
    return max(low, min(high, int(rng.lognormvariate(mu, sigma))))


def base_fraction(t: float, duration_s: float) -> float:
    """The base load as a fraction of own capacity: 25 % at the quiet end of the cycle, 85 % at its peak."""
    return 0.55 - 0.30 * math.cos(2 * math.pi * t / duration_s)


def make_pulses(rng: random.Random, duration_s: float, count: int) -> tuple[Pulse, ...]:
    """``count`` pulses at random times, each followed by at least 25 quiet minutes (to see it drain)."""
    for _ in range(1000):
        starts = sorted(rng.uniform(600, duration_s - 45 * 60) for _ in range(count))
        lengths = [rng.uniform(120, 1200) for _ in starts]
        if all(b - a >= length + 25 * 60 for a, b, length in zip(starts, starts[1:], lengths, strict=False)):
            return tuple(
                Pulse(s, s + length, rng.uniform(1.5, 4.0)) for s, length in zip(starts, lengths, strict=True)
            )
    raise ValueError("cannot fit the pulses apart in this duration")


def make_trace(seed: int, hours: float, own_slots: int, shape: Shape, pulses: int | None = None) -> Trace:
    rng = random.Random(seed)
    duration = hours * 3600
    count = pulses if pulses is not None else max(1, round(12 * hours / 24))
    pulse_list = make_pulses(rng, duration, count)
    sample = [
        shape.hold_s(
            _sizes(rng, shape.input_mean, shape.sigma, 16, 4096),
            _sizes(rng, shape.output_mean, shape.sigma, 8, 1024),
        )
        for _ in range(20_000)
    ]
    capacity_rps = own_slots / (sum(sample) / len(sample))
    times: list[float] = []
    tiers: list[int] = []
    inputs: list[int] = []
    outputs: list[int] = []
    pulse_at = 0
    t = 0.0
    while True:
        while pulse_at < len(pulse_list) and t >= pulse_list[pulse_at].end:
            pulse_at += 1
        rate = base_fraction(t, duration) * capacity_rps
        if pulse_at < len(pulse_list) and t >= pulse_list[pulse_at].start:
            rate *= pulse_list[pulse_at].multiplier
        t += rng.expovariate(rate)  # the rate changes slowly against the gaps, and in steps at pulses
        if t >= duration:
            break
        times.append(t)
        draw = rng.random()
        tiers.append(0 if draw < TIER_SHARES[0] else 1 if draw < TIER_SHARES[0] + TIER_SHARES[1] else 2)
        inputs.append(_sizes(rng, shape.input_mean, shape.sigma, 16, 4096))
        outputs.append(_sizes(rng, shape.output_mean, shape.sigma, 8, 1024))
    return Trace(duration, pulse_list, times, tiers, inputs, outputs, capacity_rps)
