"""The Serve-handle path of a model's client says, while a request waits for its first chunk (a replica
starting, as when a deployment scales up from zero), that it is still waiting, and stops once it is not.

The handle is a stand-in whose answer comes late: what is proved is the client's logging, not Serve."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backends.base import ChoiceDelta, GenerationChunk, GenerationRequest, TextPrompt
from gateway.errors import ModelStarting, openai_error
from gateway.serving import ray_model_client
from gateway.serving.ray_model_client import RayModelClient


class LateResponse:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.cancelled = False

    def __aiter__(self) -> AsyncIterator[GenerationChunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[GenerationChunk]:
        await asyncio.sleep(self.delay_s)
        yield GenerationChunk(choices=[ChoiceDelta(index=0, text="hi", finish_reason="stop")])

    def cancel(self) -> None:
        self.cancelled = True


class LateHandle:
    def __init__(self, delay_s: float) -> None:
        self.response = LateResponse(delay_s)
        self.generate = self

    def options(self, **_: Any) -> LateHandle:
        return self

    def remote(self, request: object) -> LateResponse:
        return self.response


async def test_a_request_waiting_for_a_replica_is_logged_until_its_first_chunk(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ray_model_client, "WAIT_LOG_EVERY_S", 0.02)
    client = RayModelClient(LateHandle(delay_s=0.09), name="tiny@own")
    request = GenerationRequest(request_id="r", prompt=TextPrompt("hi"))
    with caplog.at_level(logging.INFO, logger=ray_model_client.__name__):
        chunks = [chunk async for chunk in client.generate(request)]
        logged = [r for r in caplog.records if "waiting for a replica deployment=tiny@own" in r.getMessage()]
        await asyncio.sleep(0.1)  # after the answer, no more lines
        after = [r for r in caplog.records if "waiting for a replica" in r.getMessage()]
    assert chunks[0].choices[0].text == "hi"
    assert 2 <= len(logged) <= 5 and len(after) == len(logged)


async def test_a_deployment_scaled_to_zero_answers_503_with_retry_after_when_no_replica_starts_in_time() -> (
    None
):
    handle = LateHandle(delay_s=1.0)  # the replica takes longer to start than the deployment waits
    client = RayModelClient(handle, name="tiny@own", start_wait_s=0.05, running=lambda: 0)
    request = GenerationRequest(request_id="r", prompt=TextPrompt("hi"))
    with pytest.raises(ModelStarting) as info:
        [chunk async for chunk in client.generate(request)]
    error = openai_error(info.value)
    assert (error.status, error.code) == (503, "model_starting")
    assert info.value.headers == {"retry-after": "1"}  # no start measured yet: as long again, at least 1 s
    assert handle.response.cancelled  # the request leaves; Serve goes on starting the replica


async def test_a_start_that_answers_in_time_is_served_and_measured() -> None:
    client = RayModelClient(LateHandle(delay_s=0.05), name="tiny@own", start_wait_s=5, running=lambda: 0)
    request = GenerationRequest(request_id="r", prompt=TextPrompt("hi"))
    chunks = [chunk async for chunk in client.generate(request)]
    assert chunks[0].choices[0].text == "hi"
    assert client._last_start_s is not None and 0.04 <= client._last_start_s < 5


async def test_a_running_deployment_is_not_bounded_by_its_start_wait() -> None:
    """A replica that runs and takes long to its first token (a long prefill) is the stall bound's."""
    client = RayModelClient(LateHandle(delay_s=0.1), name="tiny@own", start_wait_s=0.01, running=lambda: 1)
    request = GenerationRequest(request_id="r", prompt=TextPrompt("hi"))
    assert [c.choices[0].text async for c in client.generate(request)] == ["hi"]
