"""Requests that need tools or constrained decoding reach only models that have them (in-process app)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import build_app
from gateway.billing.admission import Admission
from gateway.billing.ledger import Ledger
from gateway.billing.ledger.sqlite_store import SqliteStore
from gateway.catalog.routing import ModelRouter
from gateway.observability.metrics import GatewayMetrics
from gateway.tenancy.keystore import KeyStore
from tests.gateway.conftest import routed_model

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def client(
    keystore: KeyStore, tmp_path: Path, admission: Admission
) -> AsyncIterator[httpx.AsyncClient]:
    models = [
        dataclasses.replace(routed_model("plain"), constrained_decoding=True),  # vLLM, no tool format
        dataclasses.replace(
            routed_model("qwen"), constrained_decoding=True, tool_parser="hermes", tool_choice_auto=True
        ),
        routed_model("upstream"),  # a backend without constrained decoding
    ]
    ledger = Ledger(SqliteStore(tmp_path / "ledger.db"))
    app = build_app(ModelRouter(models), keystore, ledger, GatewayMetrics(), admission, lambda: {})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        yield client
    ledger.close()


async def post(client: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> httpx.Response:
    return await client.post("/v1/chat/completions", json={"messages": MESSAGES, **body}, headers=auth)


async def test_auto_on_a_model_without_a_tool_format_is_a_400_naming_it(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await post(client, auth, model="plain", tools=[WEATHER])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "tool_choice" and "`plain`" in error["message"] and "auto" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [WEATHER], "tool_choice": "required"}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
    ],
)
async def test_constraints_on_a_model_that_cannot_enforce_them_are_a_400(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any], param: str
) -> None:
    response = await post(client, auth, model="upstream", **body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param


async def test_model_cards_say_what_each_model_supports(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    cards = {
        m["id"]: m["capabilities"] for m in (await client.get("/v1/models", headers=auth)).json()["data"]
    }
    assert cards["qwen"] == {"tools": True, "tool_choice_auto": True, "json_schema": True, "logprobs": True}
    assert cards["plain"]["tools"] and not cards["plain"]["tool_choice_auto"]
    assert not cards["upstream"]["tools"] and not cards["upstream"]["json_schema"]


def test_auto_needs_a_deployment_that_reads_calls_not_one_that_enforces_schemas() -> None:
    """An upstream declared to read its own calls (tool_choice_auto) but not to enforce schemas takes
    ``auto``; ``required`` still needs enforcement."""
    from backends.tools import ToolFunction, ToolPlan
    from gateway.api.chat_completions import with_tool_parser
    from gateway.errors import InvalidRequest

    reads_calls = dataclasses.replace(routed_model("api"), tool_choice_auto=True)
    tools = (ToolFunction("get_weather"),)
    assert with_tool_parser(ToolPlan(tools, choice="auto"), None, reads_calls) is not None
    with pytest.raises(InvalidRequest) as refused:
        with_tool_parser(ToolPlan(tools, choice="required"), None, reads_calls)
    assert refused.value.param == "tools"
