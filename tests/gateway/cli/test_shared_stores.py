"""Two gateways opened from the same settings (``MAAS_DATABASE_URL`` on the real PostgreSQL, and
``MAAS_REDIS_URL`` on the real Redis), each with its own connections and caches, in-process over HTTP: a key
made through one works on the other, a key revoked through one is refused by the other within the key
cache's time, both write one audit log, and a rate limit holds across both."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import build_app
from gateway.billing.admission import Estimate
from gateway.catalog.routing import ModelRouter
from gateway.cli.settings import Settings
from gateway.cli.stores import open_admission_for, open_ledger_for, open_tenancy
from gateway.errors import RateLimited
from gateway.observability.metrics import GatewayMetrics
from gateway.tenancy.keystore import Principal, RateLimits
from tests.gateway.billing.conftest import REDIS, drop_redis_prefix, redis_prefix_for_new_test
from tests.gateway.billing.ledger.conftest import drop_schema, postgres_url_for_new_schema

CACHE_S = 0.5
Gateway = tuple[httpx.AsyncClient, Settings, FastAPI]


@pytest.fixture
async def gateways(tmp_path: Path) -> AsyncIterator[list[Gateway]]:
    url, schema = postgres_url_for_new_schema()
    installation = redis_prefix_for_new_test().replace("_", "-")
    env = {
        "MAAS_DATABASE_URL": url,
        "MAAS_REDIS_URL": REDIS,
        "MAAS_INSTALLATION": installation,
        "MAAS_KEY_CACHE_SECONDS": str(CACHE_S),
    }
    opened: list[Gateway] = []
    async with AsyncExitStack() as stack:
        for name in ("a", "b"):
            settings = Settings.from_env({**env, "MAAS_HOME": str(tmp_path / name)})
            settings.ensure_dirs()
            tenancy, ledger, admission = (
                open_tenancy(settings),
                open_ledger_for(settings),
                open_admission_for(settings),
            )
            stack.callback(tenancy.close)
            stack.callback(ledger.close)
            stack.callback(admission.store.close)
            app = build_app(
                ModelRouter(),
                tenancy.keystore,
                ledger,
                GatewayMetrics(),
                admission,
                dict,
                audit=tenancy.audit,
            )
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")
            await stack.enter_async_context(client)
            opened.append((client, settings, app))
        yield opened
    drop_schema(schema)
    drop_redis_prefix(f"maas-{installation}")


async def test_a_key_revoked_through_one_gateway_is_refused_by_the_other_within_the_cache_time(
    gateways: list[Gateway],
) -> None:
    (a, settings, _), (b, _, _) = gateways
    tenancy = open_tenancy(settings)
    admin = {"Authorization": f"Bearer {tenancy.keystore.create_key('operator', admin=True).secret}"}
    tenancy.close()
    created = (await a.post("/admin/keys", json={"tenant": "acme"}, headers=admin)).json()
    user = {"Authorization": f"Bearer {created['key']}"}
    assert (await b.get("/v1/models", headers=user)).status_code == 200  # made on a, works on b
    assert (await a.delete(f"/admin/keys/{created['id']}", headers=admin)).json()["revoked"] is True
    assert (await a.get("/v1/models", headers=user)).status_code == 401  # at once where revoked
    started = time.monotonic()
    while (await b.get("/v1/models", headers=user)).status_code != 401:
        assert time.monotonic() - started < CACHE_S + 1.0
        await asyncio.sleep(0.05)
    assert time.monotonic() - started <= CACHE_S + 0.2
    audit = (await b.get("/admin/audit", headers=admin)).json()["data"]
    assert [e["action"] for e in audit] == ["key.revoked", "key.created"]  # a's actions, read on b


async def test_a_rate_limit_holds_across_both_gateways_counters_in_redis(gateways: list[Gateway]) -> None:
    caller = Principal(tenant="acme", key_id="k1", tenant_limits=RateLimits(rpm=6))
    admissions = [app.state.services.admission for _, _, app in gateways]
    assert type(admissions[0].store).__name__ == "RedisCounterStore"
    results = await asyncio.gather(
        *(admissions[i % 2].admit(caller, Estimate(1, 0)) for i in range(30)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, RateLimited) for r in results) == 6
