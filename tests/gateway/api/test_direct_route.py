"""Direct routes: the inference endpoints are answered by the innermost middleware, past FastAPI's router and
exception middleware, with the answers the app's own handlers would give."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from starlette.requests import ClientDisconnect

from gateway.api.direct_route import DirectRoute, DirectRoutes, direct_endpoints
from gateway.errors import Overloaded, ServiceError

from .conftest import assert_openai_error

INFERENCE = {
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/rerank"),
    ("POST", "/v1/score"),
}


def small_app(endpoint_error: BaseException | None) -> FastAPI:
    """An app with one direct route, and an app-level handler for gateway errors that the direct front must
    not need: it answers 418, which no test expects."""
    router = APIRouter(route_class=DirectRoute)

    @router.post("/v1/thing")
    async def thing(request: Request) -> Response:
        if endpoint_error is not None:
            raise endpoint_error
        return Response(await request.body())

    app = FastAPI()
    app.include_router(router)

    async def teapot(_: Request, exc: Exception) -> Response:
        return Response(status_code=418)

    app.add_exception_handler(ServiceError, teapot)
    app.add_middleware(DirectRoutes, endpoints=direct_endpoints(app.routes))
    return app


async def call(app: FastAPI, method: str = "POST") -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        return await client.request(method, "/v1/thing", content=b"echo")


def test_every_inference_endpoint_is_a_direct_route(client: httpx.AsyncClient) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    assert set(direct_endpoints(app.routes)) >= INFERENCE
    assert ("GET", "/v1/models") not in direct_endpoints(app.routes)


async def test_a_direct_route_answers_from_its_endpoint() -> None:
    response = await call(small_app(None))
    assert response.status_code == 200 and response.content == b"echo"


async def test_a_gateway_error_is_its_openai_error_with_its_headers() -> None:
    response = await call(small_app(Overloaded.now("m", 3)))
    assert_openai_error(response, 503, "model_overloaded")
    assert response.headers["retry-after"] == "3"


async def test_a_client_gone_before_its_body_was_read_gets_499() -> None:
    response = await call(small_app(ClientDisconnect()))
    assert response.status_code == 499


async def test_an_unexpected_error_goes_up_to_the_server_error_middleware() -> None:
    response = await call(small_app(RuntimeError("bug")))
    assert response.status_code == 500


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_another_method_on_a_direct_path_is_left_to_the_router(method: str) -> None:
    response = await call(small_app(None), method)
    assert response.status_code == 405
