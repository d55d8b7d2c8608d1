"""The checks a pooling request passes before the engine runs anything."""

from __future__ import annotations

import pytest

from backends.errors import ContextLengthExceeded, InvalidRequest
from backends.vllm_pooling import check_dimensions, check_length


def test_dimensions_are_the_models_own_or_a_trained_shorter_size() -> None:
    assert check_dimensions(None, 384, matryoshka=False) is None
    assert check_dimensions(384, 384, matryoshka=False) is None
    assert check_dimensions(128, 768, matryoshka=True) == 128
    with pytest.raises(InvalidRequest, match="larger than this model's embedding size"):
        check_dimensions(385, 384, matryoshka=True)
    with pytest.raises(InvalidRequest, match="cannot shorten"):
        check_dimensions(128, 384, matryoshka=False)


def test_inputs_must_hold_tokens_and_fit_the_model() -> None:
    check_length(0, 256, 256, "input")
    with pytest.raises(InvalidRequest, match=r"input\[3\] is empty"):
        check_length(3, 0, 256, "input")
    with pytest.raises(
        ContextLengthExceeded, match=r"maximum input length is 256 tokens.*input\[1\] has 257"
    ):
        check_length(1, 257, 256, "input")
