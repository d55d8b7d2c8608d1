"""Usage routes over a real SQLite ledger: tenants see only their own usage; operators see all."""

from __future__ import annotations

import csv
import io
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
async def setup(
    tmp_path: Path, ledger: Ledger, admission: Admission
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    keystore = KeyStore(tmp_path / "maas.db")
    keys = {
        "acme": keystore.create_key("acme").secret,
        "globex": keystore.create_key("globex").secret,
        "admin": keystore.create_key("operator", admin=True).secret,
    }
    await ledger.record(record("a1", tenant="acme", model="m1"))
    await ledger.record(record("a2", tenant="acme", model="m2", chip="ascend"))
    await ledger.record(record("g1", tenant="globex", model="m1"))
    app = build_app(ModelRouter(), keystore, ledger, GatewayMetrics(), admission, dict)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        yield client, {name: f"Bearer {key}" for name, key in keys.items()}


async def test_tenant_sees_only_its_own_usage(setup: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, auth = setup
    body = (await client.get("/v1/usage", headers={"Authorization": auth["acme"]})).json()
    assert {row["model"]: row["requests"] for row in body["data"]} == {"m1": 1, "m2": 1}
    body = (await client.get("/v1/usage", headers={"Authorization": auth["globex"]})).json()
    assert [(row["model"], row["requests"]) for row in body["data"]] == [("m1", 1)]
    assert body["data"][0]["cost"] == pytest.approx((10 * 0.05 + 5 * 0.10) / 1e6)


async def test_tenants_cannot_see_chips_or_other_tenants(
    setup: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, auth = setup
    for group in ("chip", "tenant", "pool", "model,bogus"):
        response = await client.get(f"/v1/usage?group_by={group}", headers={"Authorization": auth["acme"]})
        assert response.status_code == 400 and response.json()["error"]["param"] == "group_by"
    response = await client.get("/admin/usage", headers={"Authorization": auth["acme"]})
    assert response.status_code == 403


async def test_operator_groups_by_anything_and_exports_csv(
    setup: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, auth = setup
    admin = {"Authorization": auth["admin"]}
    body = (await client.get("/admin/usage?group_by=tenant,chip", headers=admin)).json()
    assert {(r["tenant"], r["chip"]): r["requests"] for r in body["data"]} == {
        ("acme", "cpu"): 1,
        ("acme", "ascend"): 1,
        ("globex", "cpu"): 1,
    }
    response = await client.get("/admin/usage?group_by=model&format=csv&tenant=acme", headers=admin)
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["model"], r["requests"]) for r in rows] == [("m1", "1"), ("m2", "1")]


async def test_time_range_accepts_unix_and_iso(setup: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, auth = setup
    admin = {"Authorization": auth["admin"]}
    future = (await client.get("/admin/usage?start=2999-01-01", headers=admin)).json()
    assert future["data"] == []
    response = await client.get("/admin/usage?start=yesterday", headers=admin)
    assert response.status_code == 400 and response.json()["error"]["param"] == "start"
