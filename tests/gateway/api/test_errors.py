"""Error paths of the HTTP API that need no model: auth, body validation, unknown models and routes."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.api.conftest import assert_openai_error


@pytest.mark.parametrize("path", ["/v1/models", "/v1/chat/completions", "/v1/completions"])
async def test_every_v1_route_needs_a_bearer_key(client: httpx.AsyncClient, path: str) -> None:
    method = client.get if path == "/v1/models" else client.post
    assert_openai_error(await method(path), 401, "invalid_api_key")
    bad = {"Authorization": "Bearer sk-maas-not-a-key"}
    assert_openai_error(await method(path, headers=bad), 401, "invalid_api_key")
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    assert_openai_error(await method(path, headers=basic), 401, "invalid_api_key")


async def test_malformed_json_is_a_400(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.post("/v1/chat/completions", content=b'{"model": ', headers=auth)
    error = assert_openai_error(response, 400)
    assert "not valid JSON" in str(error["message"])
    response = await client.post("/v1/chat/completions", content=b"[1, 2]", headers=auth)
    assert_openai_error(response, 400)


async def test_wrong_types_name_the_parameter(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}
    error = assert_openai_error(await client.post("/v1/chat/completions", json=body, headers=auth), 400)
    assert error["param"] == "max_tokens"
    body = {"model": "m", "prompt": "x", "temperature": 9}
    error = assert_openai_error(await client.post("/v1/completions", json=body, headers=auth), 400)
    assert error["param"] == "temperature"


async def test_unknown_model_is_a_404_listing_available_models(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = {"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}
    response = await client.post("/v1/chat/completions", json=body, headers=auth)
    error = assert_openai_error(response, 404, "model_not_found")
    assert "gpt-9" in str(error["message"]) and "Available models" in str(error["message"])


async def test_unknown_route_and_method_are_openai_errors(client: httpx.AsyncClient) -> None:
    assert_openai_error(await client.get("/v1/nothing"), 404)
    assert_openai_error(await client.get("/v1/chat/completions"), 405)


async def test_health_reports_model_status(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "models": {"m": "RUNNING"}}
