"""Counters whose server goes away (a restart, a failover), for real through a TCP proxy: a limited caller
gets 503 counters_unavailable, never a 500; a settlement that cannot land is logged, not raised; once the
server is back the same store admits again (PostgreSQL reconnects, Redis's pool does)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.billing.admission import Admission, Counters, CounterStore, Estimate
from gateway.billing.redis_counters import RedisCounterStore
from gateway.errors import CountersUnavailable, openai_error
from gateway.tenancy.keystore import Principal, RateLimits
from tests.faults import TcpProxy
from tests.gateway.billing.conftest import REDIS, drop_redis_prefix, redis_prefix_for_new_test
from tests.gateway.billing.ledger.conftest import drop_schema, postgres_url_for_new_schema

NOW = 1_800_000_000.0


@pytest.fixture(params=["postgres", "redis"])
def behind_proxy(request: pytest.FixtureRequest) -> Iterator[tuple[Counters, TcpProxy]]:
    if request.param == "postgres":
        url, schema = postgres_url_for_new_schema()
        proxy = TcpProxy(("127.0.0.1", 5432))
        proxy.up()
        store: Counters = CounterStore.postgres(url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"))
        yield store, proxy
        store.close()
        proxy.down()
        drop_schema(schema)
        return
    prefix = redis_prefix_for_new_test()
    proxy = TcpProxy(("127.0.0.1", int(REDIS.rsplit(":", 1)[1].split("/")[0])))
    proxy.up()
    store = RedisCounterStore(REDIS.replace(":6379", f":{proxy.port}"), prefix=prefix)
    yield store, proxy
    store.close()
    proxy.down()
    drop_redis_prefix(prefix)


async def test_counters_gone_refuse_with_503_then_admit_again_when_back(
    behind_proxy: tuple[Counters, TcpProxy],
) -> None:
    store, proxy = behind_proxy
    gate = Admission(store, clock=lambda: NOW)
    caller = Principal(tenant="acme", key_id="k1", key_limits=RateLimits(rpm=100))
    reservation = await gate.admit(caller, Estimate(10, 0))
    proxy.down()
    with pytest.raises(CountersUnavailable) as info:
        await gate.admit(caller, Estimate(10, 0))
    error = openai_error(info.value)
    assert (error.status, error.code) == (503, "counters_unavailable")
    await gate.settle(reservation, tokens=5, nanos=0)  # lost, logged, not raised
    proxy.up()
    assert await gate.admit(caller, Estimate(10, 0)) is not None
