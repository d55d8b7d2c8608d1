"""The gateway on PostgreSQL (MAAS_DATABASE_URL): the ledger bills exactly what clients were told."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import psycopg
import pytest

from tests.e2e.conftest import (
    Gateway,
    chat_only_catalog,
    create_key,
    gateway_env,
    start_gateway,
    stop_gateway,
)
from tests.e2e.test_metering import one_request
from tests.gateway.billing.ledger.conftest import drop_schema, postgres_url_for_new_schema

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pg_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    url, schema = postgres_url_for_new_schema()
    env = gateway_env(tmp_path_factory, "maas-pg", MAAS_DATABASE_URL=url)
    gw = start_gateway(env, create_key(env, "pg-tenant"), config=chat_only_catalog(env))
    try:
        yield gw, url
    finally:
        stop_gateway(gw)
        drop_schema(schema)


def test_postgres_ledger_totals_equal_the_usage_clients_received(pg_gateway: tuple[Gateway, str]) -> None:
    gateway, url = pg_gateway
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        seen = list(pool.map(lambda i: one_request(gateway, gateway.key, i), range(12)))
    [row] = gateway.usage_rows(gateway.key)
    assert row["requests"] == 12
    assert row["prompt_tokens"] == sum(p for p, _ in seen)
    assert row["completion_tokens"] == sum(c for _, c in seen)
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), COUNT(DISTINCT request_id)"
            " FROM usage_records WHERE tenant = 'pg-tenant'"
        ).fetchone()
    assert stored == (12, row["prompt_tokens"], row["completion_tokens"], 12)
