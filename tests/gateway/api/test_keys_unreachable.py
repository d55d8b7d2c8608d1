"""The key store's PostgreSQL going away, for real through a TCP proxy: keys in a gateway's cache keep
working, a key that must be looked up gets 503 keys_unavailable (not a 500, and off the event loop), and
lookups work again once the database is back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import build_app
from gateway.billing.admission import Admission
from gateway.billing.ledger import Ledger
from gateway.catalog.routing import ModelRouter
from gateway.observability.metrics import GatewayMetrics
from gateway.tenancy.database import PostgresDatabase
from gateway.tenancy.keystore import KeyStore
from tests.faults import TcpProxy
from tests.gateway.api.conftest import assert_openai_error
from tests.gateway.billing.ledger.conftest import drop_schema, postgres_url_for_new_schema


@pytest.fixture
async def behind_proxy(
    ledger: Ledger, admission: Admission
) -> AsyncIterator[tuple[httpx.AsyncClient, KeyStore, TcpProxy]]:
    url, schema = postgres_url_for_new_schema()
    proxy = TcpProxy(("127.0.0.1", 5432))
    proxy.up()
    keystore = KeyStore(PostgresDatabase(url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")), 60.0)
    app = build_app(ModelRouter(), keystore, ledger, GatewayMetrics(), admission, dict)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        yield client, keystore, proxy
    keystore.close()
    proxy.down()
    drop_schema(schema)


async def test_cached_keys_keep_working_and_others_get_503_while_the_database_is_down(
    behind_proxy: tuple[httpx.AsyncClient, KeyStore, TcpProxy],
) -> None:
    client, keystore, proxy = behind_proxy
    known = {"Authorization": f"Bearer {keystore.create_key('acme').secret}"}
    other = {"Authorization": f"Bearer {keystore.create_key('acme').secret}"}
    assert (await client.get("/v1/models", headers=known)).status_code == 200  # now cached
    proxy.down()
    assert (await client.get("/v1/models", headers=known)).status_code == 200
    assert_openai_error(await client.get("/v1/models", headers=other), 503, "keys_unavailable")
    proxy.up()
    assert (await client.get("/v1/models", headers=other)).status_code == 200
    wrong = {"Authorization": "Bearer sk-maas-wrong"}
    assert_openai_error(await client.get("/v1/models", headers=wrong), 401)
