"""The openai_upstream backend in front of a real ``vllm serve`` (vLLM's OpenAI server on loopback).

The session's vLLM server (``tests.e2e.vllm_upstream``) and one gateway for the module. The gateway's
catalog serves the SmolLM2 folder that the default catalog prepares, through ``backend: openai_upstream``
pointing at that server; the server wants an API key, which reaches the replica only through the
environment variable the catalog names. The
official ``openai`` client drives both the gateway and, for reference, the upstream itself. The last test
kills the upstream (the session's last user of it: ``test_many_pools`` runs before); teardown proves that
no process of either is left.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import psutil
import pytest
import yaml

from tests.e2e.conftest import (
    Gateway,
    create_key,
    gateway_env,
    start_gateway,
    stop_gateway,
)
from tests.e2e.vllm_upstream import KEY_ENV, MAX_MODEL_LEN, SERVED, Upstream

pytestmark = pytest.mark.e2e

MODEL = "smollm2-upstream"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def upstream(vllm_upstream: Upstream) -> Upstream:
    """The session's vLLM server (``tests.e2e.vllm_upstream``); this module's last test kills it."""
    return vllm_upstream


@pytest.fixture(scope="module")
def weights(smollm2_weights: Path) -> Path:
    return smollm2_weights


@pytest.fixture(scope="module")
def served(upstream: Upstream, weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`maas serve` with one model, served by the openai_upstream backend in front of ``upstream``."""
    env = gateway_env(tmp_path_factory, "maas-upstream", **{KEY_ENV: upstream.key})
    catalog = {
        "models": [
            {
                "name": MODEL,
                "family": "llama",
                "context_length": MAX_MODEL_LEN,
                "pricing": {"input_per_million": 0.05, "output_per_million": 0.10, "currency": "USD"},
                "weights": {"kind": "local", "path": str(weights)},
                "deployments": [
                    {
                        "backend": "openai_upstream",
                        "chip": "cpu",
                        "engine": {
                            "base_url": upstream.base_url,
                            "model": SERVED,
                            "api_key_env": KEY_ENV,
                            "read_timeout_s": 120,
                            "retries": 1,
                            "structured_outputs": True,  # vLLM's server enforces json_schema and forced tools
                        },
                    }
                ],
            }
        ]
    }
    path = Path(env["MAAS_HOME"]) / "upstream-catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    gw = start_gateway(env, create_key(env, "upstream-e2e"), config=path)
    try:
        yield gw
    finally:
        stop_gateway(gw)


def usage_of(response: Any) -> tuple[int, int]:
    return response.usage.prompt_tokens, response.usage.completion_tokens


def test_streamed_text_equals_the_greedy_answer_and_the_upstreams_own(
    served: Gateway, upstream: Upstream
) -> None:
    client = served.client()
    whole = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=24)  # type: ignore[arg-type]
    text = whole.choices[0].message.content or ""
    assert "Paris" in text

    stream = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usages, finishes = [], [], []
    for chunk in stream:
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    assert "".join(pieces) == text
    assert len([p for p in pieces if p]) >= 2, "the answer came in one piece, not streamed"
    assert finishes == [whole.choices[0].finish_reason]
    assert len(usages) == 1 and usage_of(chunk) == usage_of(whole)

    direct = upstream.client().chat.completions.create(
        model=SERVED,
        messages=QUESTION,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=24,
    )
    assert direct.choices[0].message.content == text
    assert usage_of(direct) == usage_of(whole)


def test_the_ledger_bills_what_clients_were_told_which_is_the_upstreams_usage(
    served: Gateway, upstream: Upstream
) -> None:
    key = served.create_key("upstream-ledger")
    ours, theirs = served.client(key=key), upstream.client()
    seen = []
    for stream in (False, True):
        chat: dict[str, Any] = {"messages": QUESTION, "temperature": 0, "max_tokens": 8}
        text: dict[str, Any] = {"prompt": "The capital of France is", "temperature": 0, "max_tokens": 8}
        for create, body in ((ours.chat.completions.create, chat), (ours.completions.create, text)):
            if stream:
                chunks = list(
                    create(model=MODEL, stream=True, stream_options={"include_usage": True}, **body)
                )
                got = usage_of(chunks[-1])
            else:
                got = usage_of(create(model=MODEL, **body))
            seen.append(got)
        assert seen[-2] == usage_of(theirs.chat.completions.create(model=SERVED, **chat))
        assert seen[-1] == usage_of(theirs.completions.create(model=SERVED, **text))

    response = httpx.get(f"{served.base_url}/v1/usage", headers={"Authorization": f"Bearer {key}"})
    [row] = response.json()["data"]
    assert (row["model"], row["requests"]) == (MODEL, 4)
    assert (row["prompt_tokens"], row["completion_tokens"]) == tuple(map(sum, zip(*seen, strict=True)))
    with sqlite3.connect(Path(served.env["MAAS_HOME"]) / "maas.db") as db:
        flags = db.execute(
            "SELECT usage_estimated FROM usage_records WHERE tenant = 'upstream-ledger'"
        ).fetchall()
    assert flags == [(0,)] * 4  # vLLM reports usage, so nothing is estimated


def test_upstream_errors_come_back_as_our_error_objects(served: Gateway, upstream: Upstream) -> None:
    client = served.client()
    too_long = "hello " * (MAX_MODEL_LEN + 100)
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model=MODEL, prompt=too_long, max_tokens=4, stream=stream)
        assert info.value.status_code == 400
        body: Any = info.value.body
        assert (body["type"], body["code"]) == ("invalid_request_error", "context_length_exceeded")
        assert f"maximum context length is {MAX_MODEL_LEN}" in body["message"]

    # A token id the upstream's vocabulary lacks: vLLM answers 200 and an error event; ours is a 400.
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL, prompt=[999_999], max_tokens=4)
    body = info.value.body
    assert body["type"] == "invalid_request_error" and "999999" in body["message"]
    port = upstream.base_url.rsplit(":", 1)[1].split("/")[0]
    assert port not in body["message"] and upstream.key not in body["message"]


CITY_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Paris", "Oslo"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "The weather in a city", "parameters": CITY_SCHEMA},
}


def test_a_json_schema_passes_through_the_upstream_and_an_ignored_forced_call_is_caught(
    served: Gateway,
) -> None:
    """The schema is enforced by the upstream and the answer fits. This vLLM server (0.32, CPU, hermes
    parser) does not enforce a named tool choice: it writes free text until max_tokens. The gateway checks
    what comes back, so the whole answer is a 502 naming the fault instead of text posing as the answer;
    streamed, the upstream's call pieces go through as they came, cut by max_tokens."""
    client = served.client()
    ask = [{"role": "user", "content": "Plan a trip to Paris as JSON."}]
    answer = client.chat.completions.create(
        model=MODEL,
        messages=ask,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=40,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "trip", "strict": True, "schema": CITY_SCHEMA},
        },  # type: ignore[typeddict-item]
    )
    assert answer.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(answer.choices[0].message.content or ""), CITY_SCHEMA)
    rows = served.usage_rows(served.key)
    assert rows, "the structured answer is in the ledger"

    forced = {"type": "function", "function": {"name": "get_weather"}}
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(
            model=MODEL,
            messages=ask,
            temperature=0,
            max_tokens=40,
            tools=[WEATHER_TOOL],
            tool_choice=forced,  # type: ignore[arg-type, list-item]
        )
    assert refused.value.status_code == 502 and refused.value.code == "invalid_upstream_answer"
    assert "instead of the tool call" in refused.value.message

    stream = client.chat.completions.create(
        model=MODEL,
        messages=ask,
        temperature=0,
        max_tokens=40,
        tools=[WEATHER_TOOL],
        tool_choice=forced,
        stream=True,  # type: ignore[arg-type, list-item]
    )
    names, finishes = [], []
    for chunk in stream:
        for choice in chunk.choices:
            names += [
                p.function.name for p in choice.delta.tool_calls or [] if p.function and p.function.name
            ]
            finishes += [choice.finish_reason] if choice.finish_reason else []
    assert names == ["get_weather"] and finishes == ["length"]


def test_a_killed_upstream_gives_a_clean_503(served: Gateway, upstream: Upstream) -> None:
    victims = [
        psutil.Process(upstream.process.pid),
        *psutil.Process(upstream.process.pid).children(recursive=True),
    ]
    for proc in victims:
        proc.kill()
    upstream.process.wait(timeout=30)
    psutil.wait_procs(victims, timeout=30)

    client = served.client()
    for stream in (False, True):
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4, stream=stream)  # type: ignore[arg-type]
        assert time.monotonic() - started < 15
        assert info.value.status_code == 503
        body: Any = info.value.body
        assert (body["type"], body["code"]) == ("service_unavailable", "backend_unavailable")
        assert "127.0.0.1" not in body["message"]
