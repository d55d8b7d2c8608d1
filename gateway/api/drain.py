"""Draining before a shutdown: once it begins, requests already in the gateway finish, new ones get 503 with
``Retry-After`` (so a client or load balancer goes to another gateway), and ``/health`` says ``draining``.

``Drain`` counts the HTTP requests in flight; the server that owns it (``gateway.cli.serve``) stops once
the count reaches zero or its grace period is over.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.asgi_errors import send_error
from gateway.errors import ShuttingDown

# Still answered while draining: a load balancer's probe and the last scrape of the metrics.
ALWAYS_ANSWERED = ("/health", "/metrics")


class Drain:
    """Whether the gateway is draining, and how many requests it still holds."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0

    def begin(self) -> None:
        self.draining = True

    def alone(self) -> bool:
        """Whether at most one request is in flight (the caller's own)."""
        return self.in_flight <= 1


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
            refusal = ShuttingDown("This gateway is shutting down; retry on another one.")
            await send_error(send, refusal, (b"retry-after", b"1"), (b"connection", b"close"))
            return
        self.drain.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.in_flight -= 1
