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
