"""Operator routes for tenants and keys, behind an admin key."""

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


@pytest.fixture
async def gateway(
    tmp_path: Path, ledger: Ledger, admission: Admission
) -> AsyncIterator[tuple[httpx.AsyncClient, KeyStore, dict[str, str]]]:
    keystore = KeyStore(tmp_path / "maas.db", cache_seconds=0)
    admin = {"Authorization": f"Bearer {keystore.create_key('operator', admin=True).secret}"}
    app = build_app(ModelRouter(), keystore, ledger, GatewayMetrics(), admission, dict)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        yield client, keystore, admin


async def test_operator_creates_tenant_and_key_then_revokes_it(
    gateway: tuple[httpx.AsyncClient, KeyStore, dict[str, str]],
) -> None:
    client, keystore, admin = gateway
    tenant = {"name": "acme", "rpm": 100, "budget": "12.5", "period": "day"}
    assert (await client.post("/admin/tenants", json=tenant, headers=admin)).status_code == 200
    created = (await client.post("/admin/keys", json={"tenant": "acme", "tpm": 5000}, headers=admin)).json()
    principal = keystore.authenticate(created["key"])
    assert principal is not None and principal.tenant == "acme"
    assert principal.tenant_limits.rpm == 100 and principal.key_limits.tpm == 5000
    assert principal.budget is not None and principal.budget.nanos == 12_500_000_000
    revoked = await client.delete(f"/admin/keys/{created['id']}", headers=admin)
    assert revoked.json()["revoked"] is True
    assert keystore.authenticate(created["key"]) is None
    again = await client.delete(f"/admin/keys/{created['id']}", headers=admin)
    assert again.status_code == 404


async def test_admin_routes_refuse_tenant_keys_and_bad_bodies(
    gateway: tuple[httpx.AsyncClient, KeyStore, dict[str, str]],
) -> None:
    client, keystore, admin = gateway
    tenant_key = {"Authorization": f"Bearer {keystore.create_key('acme').secret}"}
    response = await client.post("/admin/keys", json={"tenant": "acme"}, headers=tenant_key)
    assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"
    response = await client.post("/admin/tenants", json={"name": "x", "rpm": 0}, headers=admin)
    assert response.status_code == 400 and response.json()["error"]["param"] == "rpm"
    response = await client.post(
        "/admin/keys", json={"tenant": "x", "expires_at": "2001-01-01T00:00:00"}, headers=admin
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "expires_at"
    for body in ({"tenant": "x", "models": ["a,b"]}, {"tenant": "t" * 500}):
        response = await client.post("/admin/keys", json=body, headers=admin)
        assert response.status_code == 400, response.text
    response = await client.post("/admin/tenants", json={"name": "n" * 500}, headers=admin)
    assert response.status_code == 400 and response.json()["error"]["param"] == "name"


async def test_expired_keys_stop_working(gateway: tuple[httpx.AsyncClient, KeyStore, dict[str, str]]) -> None:
    _, keystore, _ = gateway
    created = keystore.create_key("acme", expires_at=1.0)
    assert keystore.authenticate(created.secret) is None
