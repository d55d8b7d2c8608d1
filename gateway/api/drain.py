"""Draining before a shutdown: once it begins, requests already in the gateway finish, new ones get 503 with
``Retry-After`` (so a client or load balancer goes to another gateway), and ``/health`` says ``draining``.

``Drain`` counts the HTTP requests in flight; the server that owns it (``gateway.cli.serve``) stops once
the count reaches zero or its grace period is over.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import ShuttingDown, openai_error

# Still answered while draining: a load balancer's probe and the last scrape of the metrics.
ALWAYS_ANSWERED = ("/health", "/metrics")


class Drain:
    """Whether the gateway is draining, and how many requests it still holds."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0

    def begin(self) -> None:
        self.draining = True


class DrainGate:
    """Pure ASGI middleware: counts requests in flight, and refuses new ones while draining."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.drain.draining and not scope["path"].startswith(ALWAYS_ANSWERED):
            await _refuse(send)
            return
        self.drain.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.in_flight -= 1


async def _refuse(send: Send) -> None:
    answer = openai_error(ShuttingDown("This gateway is shutting down; retry on another one."))
    body = json.dumps(answer.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
