"""Request bodies past a size limit are refused with 413 before they are read into memory.

A declared ``Content-Length`` over the limit is answered at once; a chunked body is counted as it arrives
and refused as soon as it passes the limit, so a client cannot make the gateway buffer an unbounded body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.asgi_errors import send_error
from gateway.errors import RequestTooLarge

MAX_BODY_BYTES = 8 * 2**20
"""Large enough for a 128k-token prompt several times over."""


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"The request body is larger than this gateway accepts ({limit} bytes).")


class BodyLimit:
    """Pure ASGI middleware: 413 for a body over ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit:
                    await send_error(send, _too_large(self.limit))
                    return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _too_large(self.limit)  # answered by the app's handler for gateway errors
            return message

        await self.app(scope, counted, send)
