"""OpenAI error objects as responses: sent straight from ASGI middleware, or returned by a handler."""

from __future__ import annotations

import json
import logging

from fastapi.responses import JSONResponse, Response
from starlette.types import Send

from gateway.errors import CLIENT_CLOSED_REQUEST, OpenAIError, ServiceError, openai_error

logger = logging.getLogger(__name__)


def error_response(error: OpenAIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def client_gone_response() -> Response:
    """The client left before its request was read: nobody to answer, nothing served or billed."""
    logger.info("client left before its request was read")
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def send_error(send: Send, error: ServiceError, *extra: tuple[bytes, bytes]) -> None:
    answer = openai_error(error)
    body = json.dumps(answer.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (answer.headers or {}).items()]
    await send({"type": "http.response.start", "status": answer.status, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": body})
