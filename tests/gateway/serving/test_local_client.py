"""Backends that run in the gateway process: chosen by the backend class, started once in the serving
loop, whole answers merged, and an abandoned stream closes the backend's own stream.

The backend here is a stand-in that records what happens to it (the real one, ``openai_upstream``
against a real vLLM server, is exercised by tests/e2e/test_openai_upstream.py).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import AsyncIterator
from typing import ClassVar

from pydantic import BaseModel

from backends.base import (
    ChoiceDelta,
    GenerationChunk,
    GenerationRequest,
    ModelSpec,
    TextPrompt,
    Usage,
)
from gateway.billing.overload import ModelGates, gated
from gateway.serving.local_client import LocalModelClient, probe, runs_in_gateway
from gateway.serving.stall import within

NAME = f"{__name__}:RecordingBackend"


class RecordingBackend:
    Options = BaseModel
    RUNS_IN_GATEWAY = True
    events: ClassVar[list[str]] = []

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> RecordingBackend:
        return cls()

    async def start(self) -> None:
        self.events.append(f"start in thread {threading.get_ident()}")

    async def check_health(self) -> None:
        return None

    def stop(self) -> None:
        self.events.append("stop")

    async def aclose(self) -> None:
        self.events.append("aclose")

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        try:
            for i in range(3):
                yield GenerationChunk([ChoiceDelta(0, f"w{i} ", "stop" if i == 2 else None)], Usage(2, i + 1))
        finally:
            self.events.append("stream closed")


SPEC = ModelSpec(name="m", weights_path="/none", context_length=64, chip="cpu")
REQUEST = GenerationRequest("r", TextPrompt("hi"))
WHOLE = GenerationRequest("r", TextPrompt("hi"), whole=True)


def test_only_client_backends_without_chips_run_in_the_gateway() -> None:
    assert runs_in_gateway(NAME, 0)
    assert not runs_in_gateway(NAME, 1)  # asked for chips: it gets a replica placed on them
    assert runs_in_gateway("openai_upstream", 0)
    assert not runs_in_gateway("vllm", 0)


def test_probe_starts_and_closes_an_instance_in_its_own_loop() -> None:
    RecordingBackend.events.clear()
    probe(SPEC, NAME)
    assert RecordingBackend.events[-1] == "aclose"


async def test_backend_starts_once_and_whole_answers_are_merged() -> None:
    RecordingBackend.events.clear()
    client = LocalModelClient(SPEC, NAME)
    whole = [c async for c in client.generate(WHOLE)]
    streamed = [c async for c in client.generate(REQUEST)]
    assert [c.choices[0].text for c in whole] == ["w0 w1 w2 "]
    assert whole[0].usage == Usage(2, 3)
    assert len(streamed) == 3
    assert sum(e.startswith("start") for e in RecordingBackend.events) == 1


async def test_a_client_that_leaves_closes_the_backend_stream() -> None:
    RecordingBackend.events.clear()
    client = LocalModelClient(SPEC, NAME)
    chunks = client.generate(REQUEST)
    await anext(chunks)
    await chunks.aclose()
    assert "stream closed" in RecordingBackend.events


async def test_close_from_another_thread_runs_on_the_serving_loop() -> None:
    RecordingBackend.events.clear()
    client = LocalModelClient(SPEC, NAME)
    [c async for c in client.generate(WHOLE)]
    await asyncio.to_thread(client.close)
    assert RecordingBackend.events[-1] == "aclose"


async def test_a_whole_answer_taken_as_dispatch_closes_every_generator_below_it_in_its_own_task() -> None:
    """A generator left open is closed later from the garbage collector by the loop's async-generator
    hook: one more task and wake-up of the loop for each, on every request."""
    RecordingBackend.events.clear()
    client = LocalModelClient(SPEC, NAME)
    left_open: list[str] = []
    firstiter, finalizer = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter, lambda agen: left_open.append(agen.__qualname__))
    try:
        gate = ModelGates().gate("m", 4, 4)
        chunks = gated(gate.slot("t"), within(client.generate(WHOLE), 5, "m"))
        first = await anext(chunks)
        await chunks.aclose()
        gc.collect()
    finally:
        sys.set_asyncgen_hooks(firstiter, finalizer)
    assert first.choices[0].text == "w0 w1 w2 "
    assert left_open == []
    assert "stream closed" in RecordingBackend.events
    assert gate.running == 0
