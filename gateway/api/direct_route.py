"""The inference endpoints' routes: documented by FastAPI, served past its machinery.

An inference endpoint takes the ``Request`` alone and returns a ``Response``: it authenticates and
validates its body itself (``deps.authenticate``, ``deps.parse_body``), and its body's schema reaches the
OpenAPI document through ``openapi_extra``. So it needs nothing of what FastAPI and Starlette wrap a route
in: dependency solving, the check of its return value, the exception middleware, the router's matching and
the exit stack for dependencies with ``yield``. ``DirectRoute`` marks such a route (and, where FastAPI does
serve it, calls the endpoint as it is); ``DirectRoutes``, the innermost middleware, answers a request for
one of them itself. On the upstream path at one request at a time these layers were about a tenth of a
millisecond of the gateway's CPU per request (``python -m benchmarks ab``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.asgi_errors import client_gone_response, error_response
from gateway.errors import ServiceError, openai_error

Endpoint = Callable[[Request], Awaitable[Response]]


class DirectRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            return await endpoint(request)

        return handle


def direct_endpoints(routes: Iterable[BaseRoute]) -> dict[tuple[str, str], Endpoint]:
    """Each ``DirectRoute``'s endpoint by (method, path)."""
    return {
        (method, route.path): route.endpoint
        for route in routes
        if isinstance(route, DirectRoute)
        for method in route.methods
    }


class DirectRoutes:
    """Pure ASGI middleware: a request for a direct route goes straight to its endpoint. A gateway error
    becomes its OpenAI error, a client gone before its body was read a 499, as the app's exception
    handlers would answer; anything else goes up to Starlette's server-error middleware (a 500)."""

    def __init__(self, app: ASGIApp, endpoints: dict[tuple[str, str], Endpoint]) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoints.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await endpoint(Request(scope, receive))
        except ServiceError as exc:
            response = error_response(openai_error(exc))
        except ClientDisconnect:
            response = client_gone_response()
        await response(scope, receive, send)
