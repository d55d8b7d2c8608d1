"""A replica hung rather than dead (its engine processes stopped, not killed): the stream it holds ends
with an error event after the model's stall timeout instead of hanging, and once the engine runs again
the model answers as before."""

from __future__ import annotations

import contextlib
import signal
import time

import openai
import psutil
import pytest

from tests.e2e.conftest import MODEL, Gateway, process_tree

pytestmark = pytest.mark.e2e

STALL_TIMEOUT_S = 30  # models.yaml


def engine_processes(gateway: Gateway) -> list[psutil.Process]:
    found = []
    for proc in process_tree(gateway.process.pid):
        with contextlib.suppress(psutil.Error):
            if proc.name().startswith(("VLLM::EngineCore", "VLLM::Worker")):
                found.append(proc)
    return found


def test_a_hung_engine_ends_its_stream_with_an_error_not_a_hang(gateway: Gateway) -> None:
    engines = engine_processes(gateway)
    assert engines, "no vLLM engine process found"
    stream = gateway.client().completions.create(
        model=MODEL, prompt="Count from 1 to 500: 1, 2, 3,", max_tokens=400, temperature=0, stream=True
    )
    received = []
    stopped = None
    try:
        with pytest.raises(openai.APIError) as info:
            for chunk in stream:
                received.append(chunk)
                if len(received) == 2:
                    for proc in engines:
                        proc.send_signal(signal.SIGSTOP)
                    stopped = time.monotonic()
        assert stopped is not None
        waited = time.monotonic() - stopped
    finally:
        for proc in engines:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "timeout", info.value.body
    assert STALL_TIMEOUT_S - 1 <= waited < STALL_TIMEOUT_S + 15
    answer = gateway.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0
    )
    assert "Paris" in (answer.choices[0].message.content or "")
