"""A whole answer's body: JSON from orjson, numpy arrays and non-string keys included, with no warning."""

from __future__ import annotations

import json
import warnings

import numpy as np

from gateway.api.generation import JsonAnswer


def test_a_whole_answer_is_json_with_numpy_arrays_and_integer_keys_and_warns_nothing() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastAPI's ORJSONResponse warned on every answer it built
        embedding = np.array([0.5, -1.0], dtype=np.float32)
        answer = JsonAnswer({"data": [{"embedding": embedding}], "top": {3: "x"}})
    assert answer.media_type == "application/json"
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.body) == {"data": [{"embedding": [0.5, -1.0]}], "top": {"3": "x"}}
