"""OpenAI's ``service_tier`` picks the TTFT SLO a request is queued and placed by (in-process app)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.api.generation import Call, placement_request
from gateway.app import build_app
from gateway.billing.admission import Admission
from gateway.billing.ledger import Ledger
from gateway.billing.ledger.sqlite_store import SqliteStore
from gateway.catalog.policy import Routing
from gateway.catalog.routing import ModelRouter, RoutedModel
from gateway.observability.metrics import GatewayMetrics
from gateway.tenancy.keystore import KeyStore, Principal
from tests.gateway.api.conftest import assert_openai_error
from tests.gateway.conftest import routed_model

TIERED = Routing(ttft_slo_s=10, service_tiers={"priority": 2, "flex": 120})


def tiered_model() -> RoutedModel:
    return dataclasses.replace(routed_model("tiered"), routing=TIERED)


@pytest.fixture
async def client(
    keystore: KeyStore, tmp_path: Path, admission: Admission
) -> AsyncIterator[httpx.AsyncClient]:
    ledger = Ledger(SqliteStore(tmp_path / "ledger.db"))
    router = ModelRouter([tiered_model(), routed_model("plain")])
    app = build_app(router, keystore, ledger, GatewayMetrics(), admission, lambda: {})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        yield client
    ledger.close()


@pytest.mark.parametrize(
    ("tier", "slo"), [(None, 10), ("auto", 10), ("default", 10), ("priority", 2), ("flex", 120)]
)
def test_a_calls_slo_is_its_service_tiers_and_placement_weighs_it(tier: str | None, slo: float) -> None:
    call = Call("chat.completions", Principal("t", "k"), tiered_model(), service_tier=tier)  # type: ignore[arg-type]
    assert call.ttft_slo_s == slo and placement_request(call).ttft_slo_s == slo


@pytest.mark.parametrize(("model", "tier"), [("tiered", "scale"), ("plain", "priority"), ("plain", "flex")])
async def test_a_tier_the_model_does_not_offer_is_a_400_naming_the_ones_it_does(
    client: httpx.AsyncClient, auth: dict[str, str], model: str, tier: str
) -> None:
    for path, body in [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/completions", {"prompt": "hi"}),
    ]:
        response = await client.post(path, json={"model": model, "service_tier": tier, **body}, headers=auth)
        error = assert_openai_error(response, 400, "unsupported_service_tier")
        assert error["param"] == "service_tier" and f"`{model}`" in str(error["message"])
        assert "auto, default" in str(error["message"])


async def test_an_unknown_tier_name_is_a_400_on_the_field(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = {"model": "tiered", "service_tier": "fastest", "messages": [{"role": "user", "content": "hi"}]}
    response = await client.post("/v1/chat/completions", json=body, headers=auth)
    assert response.status_code == 400 and "service_tier" in str(response.json()["error"]["param"])


async def test_model_cards_list_the_tiers_and_their_slo(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    cards = {m["id"]: m for m in (await client.get("/v1/models", headers=auth)).json()["data"]}
    assert cards["tiered"]["service_tiers"] == {
        "default": {"ttft_slo_s": 10},
        "priority": {"ttft_slo_s": 2},
        "flex": {"ttft_slo_s": 120},
    }
    assert "service_tiers" not in cards["plain"]


def test_service_tiers_without_a_default_slo_are_refused_by_the_catalog() -> None:
    with pytest.raises(ValueError, match="service_tiers need ttft_slo_s"):
        Routing(service_tiers={"priority": 1})
