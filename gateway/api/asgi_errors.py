"""An OpenAI error object sent straight from ASGI middleware, before any route runs."""

from __future__ import annotations

import json

from starlette.types import Send

from gateway.errors import ServiceError, openai_error


async def send_error(send: Send, error: ServiceError, *extra: tuple[bytes, bytes]) -> None:
    answer = openai_error(error)
    body = json.dumps(answer.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (answer.headers or {}).items()]
    await send({"type": "http.response.start", "status": answer.status, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": body})
