"""Every route of the app, found by walking its route table, has the authentication it should: tenant routes
need a key, admin routes an operator key, and only the listed routes are public. A new route fails here
until it is given a place in this table."""

from __future__ import annotations

import re

import httpx
from fastapi.routing import APIRoute
from starlette.routing import Route

from tests.gateway.api.conftest import assert_openai_error

PUBLIC = {
    "/health",  # model status only
    "/metrics",  # Prometheus scrape: keep it on an address only the scraper reaches (see README)
    "/dashboard",  # the page and its scripts hold no data; the data is behind /admin
    "/dashboard/static/{name}",
    "/openapi.json",  # the API's schema
}


def concrete(path: str) -> str:
    """A request path for a route's pattern: every parameter filled in."""
    return re.sub(r"\{[^}]+\}", "x", path)


def routes(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    app = client._transport.app  # type: ignore[attr-defined]
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute | Route):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    found.append((method, route.path))
    return found


async def test_the_route_table_is_what_this_test_knows(client: httpx.AsyncClient) -> None:
    paths = {path for _, path in routes(client)}
    unknown = {p for p in paths if p not in PUBLIC and not p.startswith(("/v1/", "/admin/"))}
    assert not unknown, f"routes with no authentication rule here: {unknown}"
    assert len(paths) >= 15


async def test_every_non_public_route_refuses_a_missing_or_unknown_key(client: httpx.AsyncClient) -> None:
    for method, path in routes(client):
        if path in PUBLIC:
            continue
        for headers in ({}, {"Authorization": "Bearer sk-maas-unknown"}, {"Authorization": "Basic eDp5"}):
            response = await client.request(method, concrete(path), headers=headers)
            assert_openai_error(response, 401, "invalid_api_key")


async def test_every_admin_route_refuses_a_tenant_key(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    admin = [(m, p) for m, p in routes(client) if p.startswith("/admin/")]
    assert len(admin) >= 8
    for method, path in admin:
        response = await client.request(method, concrete(path), headers=auth)
        assert_openai_error(response, 403)


async def test_public_routes_answer_without_a_key_and_never_show_one(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    secret = auth["Authorization"].removeprefix("Bearer ")
    for method, path in routes(client):
        if path in PUBLIC and "{" not in path:
            response = await client.request(method, path)
            assert response.status_code in (200, 503), (path, response.status_code)
            assert secret not in response.text
