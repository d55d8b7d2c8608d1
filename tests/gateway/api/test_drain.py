"""While the gateway drains, new requests get 503 ``shutting_down`` and /health says ``draining``; the
requests already in it are counted until their answers end."""

from __future__ import annotations

import asyncio

import httpx
from starlette.types import Receive, Scope, Send

from gateway.api.drain import Drain, DrainGate
from tests.gateway.api.conftest import assert_openai_error


async def test_a_draining_gateway_refuses_new_requests_but_still_answers_health(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    drain: Drain = client._transport.app.state.services.drain  # type: ignore[attr-defined]
    assert (await client.get("/v1/models", headers=auth)).status_code == 200
    drain.begin()
    response = await client.get("/v1/models", headers=auth)
    assert_openai_error(response, 503, "shutting_down")
    assert response.headers["retry-after"] == "1"
    health = await client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "draining"
    assert drain.in_flight == 0


async def test_requests_in_flight_are_counted_until_their_answer_ends() -> None:
    release = asyncio.Event()

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await release.wait()
        await send({"type": "http.response.body", "body": b"done"})

    drain = Drain()
    transport = httpx.ASGITransport(app=DrainGate(slow_app, drain))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        pending = asyncio.create_task(client.get("/v1/chat/completions"))
        await asyncio.sleep(0.05)
        assert drain.in_flight == 1
        drain.begin()  # a request already inside finishes
        release.set()
        assert (await pending).text == "done"
    assert drain.in_flight == 0
