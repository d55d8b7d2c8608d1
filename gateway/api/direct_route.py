"""Routes for the inference endpoints: documented by FastAPI, called without its dependency resolution.

An inference endpoint takes the ``Request`` alone and returns a ``Response``: it authenticates and
validates its body itself (``deps.authenticate``, ``deps.parse_body``), and its body's schema reaches the
OpenAPI document through ``openapi_extra``. FastAPI's own handler would still solve the endpoint's
dependencies and check its return value on every call; on the upstream path at one request at a time
that was about a tenth of a millisecond of a request's overhead. ``get_route_handler`` is FastAPI's
documented hook for a route class of one's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class DirectRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[[Request], Awaitable[Response]] = self.endpoint

        async def handle(request: Request) -> Response:
            return await endpoint(request)

        return handle
