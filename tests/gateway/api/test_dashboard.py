"""The built-in dashboard's page and data: public page without data, data only for operators."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.app import build_app
from gateway.billing.admission import Admission
from gateway.billing.ledger import Ledger
from gateway.catalog.routing import ModelRouter
from gateway.observability.metrics import GatewayMetrics
from gateway.tenancy.keystore import KeyStore
from tests.gateway.billing.ledger.test_stores import record


@pytest.fixture
async def board(
    tmp_path: Path, ledger: Ledger, admission: Admission
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], dict[str, str]]]:
    keystore = KeyStore(tmp_path / "maas.db")
    admin = {"Authorization": f"Bearer {keystore.create_key('operator', admin=True).secret}"}
    tenant = {"Authorization": f"Bearer {keystore.create_key('acme').secret}"}
    for i in range(3):
        await ledger.record(record(f"a{i}", tenant="acme"))
    await ledger.record(record("g1", tenant="globex", prompt_tokens=100))
    await ledger.record(
        record(
            "e1",
            tenant="globex",
            model="minilm",
            endpoint="embeddings",
            prompt_tokens=40,
            completion_tokens=0,
        )
    )
    metrics = GatewayMetrics()
    app = build_app(ModelRouter(), keystore, ledger, metrics, admission, dict)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        yield client, admin, tenant


async def test_page_and_scripts_are_served_without_data(
    board: tuple[httpx.AsyncClient, dict[str, str], dict[str, str]],
) -> None:
    client, _, _ = board
    page = await client.get("/dashboard")
    assert page.status_code == 200 and "Operator sign-in" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from a CDN
    for name in ("charts.js", "dashboard.js", "dashboard.css"):
        assert (await client.get(f"/dashboard/static/{name}")).status_code == 200
    assert (await client.get("/dashboard/static/../../cli.py")).status_code == 404


async def test_data_needs_an_operator_key(
    board: tuple[httpx.AsyncClient, dict[str, str], dict[str, str]],
) -> None:
    client, _, tenant = board
    assert (await client.get("/admin/dashboard/data")).status_code == 401
    assert (await client.get("/admin/dashboard/data", headers=tenant)).status_code == 403


async def test_top_tenants_match_the_usage_api(
    board: tuple[httpx.AsyncClient, dict[str, str], dict[str, str]],
) -> None:
    client, admin, _ = board
    data = (await client.get("/admin/dashboard/data", headers=admin)).json()
    usage = (await client.get("/admin/usage?group_by=tenant", headers=admin)).json()["data"]
    expected = {u["tenant"]: u["prompt_tokens"] + u["completion_tokens"] for u in usage}
    assert {t["tenant"]: t["tokens"] for t in data["top_tenants"]} == expected
    assert [t["tenant"] for t in data["top_tenants"]] == ["acme", "globex"]  # by revenue
    assert sum(p["tokens"] for p in data["series"]) == sum(expected.values())


async def test_embedding_tokens_show_per_model_and_endpoint(
    board: tuple[httpx.AsyncClient, dict[str, str], dict[str, str]],
) -> None:
    client, admin, _ = board
    data = (await client.get("/admin/dashboard/data", headers=admin)).json()
    rows = {(m["model"], m["endpoint"]): m for m in data["tokens_by_model"]}
    assert rows[("minilm", "embeddings")]["prompt_tokens"] == 40
    assert rows[("minilm", "embeddings")]["completion_tokens"] == 0
    usage = (await client.get("/admin/usage?group_by=model,endpoint,chip,pool", headers=admin)).json()["data"]
    [embeddings] = [u for u in usage if u["endpoint"] == "embeddings"]
    assert embeddings["model"] == "minilm" and embeddings["prompt_tokens"] == 40
    assert embeddings["chip"] == "cpu" and embeddings["pool"] == "own"


async def test_token_share_by_pool_and_spill_events_show_on_the_dashboard(
    tmp_path: Path, ledger: Ledger, admission: Admission
) -> None:
    keystore = KeyStore(tmp_path / "maas.db")
    admin = {"Authorization": f"Bearer {keystore.create_key('operator', admin=True).secret}"}
    metrics = GatewayMetrics()
    metrics.observe(record("o1", pool="own", prompt_tokens=60, completion_tokens=15))
    metrics.observe(record("r1", pool="api", deployment="m1@api", prompt_tokens=20, completion_tokens=5))
    metrics.spills.labels("m1", "spill").inc()
    app = build_app(ModelRouter(), keystore, ledger, metrics, admission, dict)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        data = (await client.get("/admin/dashboard/data", headers=admin)).json()
    assert data["token_share_by_pool"] == {"own": 0.75, "api": 0.25}
    assert data["placement_events"] == {"spill": 1.0}
