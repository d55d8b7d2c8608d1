"""Next-token choice: greedy, top-p, penalties, seeds and raw logprobs."""

from __future__ import annotations

import math

import torch

from backends.base import SamplingOptions
from backends.token_sampling import TokenSampler

LOGITS = torch.log(torch.tensor([0.6, 0.3, 0.1]))


def test_temperature_zero_picks_the_most_likely_token() -> None:
    assert TokenSampler(SamplingOptions(temperature=0), 3, "cpu").sample(LOGITS).token_id == 0


def test_top_p_keeps_only_the_smallest_set_reaching_the_mass() -> None:
    only_first = {
        TokenSampler(SamplingOptions(top_p=0.5, seed=s), 3, "cpu").sample(LOGITS).token_id for s in range(40)
    }
    assert only_first == {0}
    two = {
        TokenSampler(SamplingOptions(top_p=0.8, seed=s), 3, "cpu").sample(LOGITS).token_id for s in range(80)
    }
    assert two == {0, 1}


def test_presence_penalty_moves_greedy_off_a_token_already_generated() -> None:
    sampler = TokenSampler(SamplingOptions(temperature=0, presence_penalty=2.0), 3, "cpu")
    assert [sampler.sample(LOGITS).token_id for _ in range(2)] == [0, 1]


def test_frequency_penalty_grows_with_each_repeat() -> None:
    logits = torch.log(torch.tensor([0.7, 0.3]))  # gap ln(7/3) = 0.85
    sampler = TokenSampler(SamplingOptions(temperature=0, frequency_penalty=0.5), 2, "cpu")
    assert [sampler.sample(logits).token_id for _ in range(3)] == [0, 0, 1]


def test_same_seed_same_tokens() -> None:
    logits = torch.zeros(50)
    runs = [[TokenSampler(SamplingOptions(seed=3), 50, "cpu").sample(logits).token_id] for _ in range(2)]
    assert runs[0] == runs[1]


def test_logprobs_are_of_the_raw_distribution_with_top_alternatives() -> None:
    sampled = TokenSampler(SamplingOptions(temperature=0.1, logprobs=2, seed=1), 3, "cpu").sample(LOGITS)
    assert sampled.logprob is not None
    assert math.isclose(sampled.logprob, math.log([0.6, 0.3, 0.1][sampled.token_id]), rel_tol=1e-5)
    assert [t for t, _ in sampled.top] == [0, 1]
