"""Redis counters for real, beyond what the shared admission tests prove on every counter store: several
gateways at once, the key layout (a prefix per installation, one hash tag per tenant) and expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from gateway.billing.admission import Admission, Estimate
from gateway.billing.redis_counters import RedisCounterStore
from gateway.errors import QuotaExceeded, RateLimited
from gateway.tenancy.keystore import Budget, Principal, RateLimits
from tests.gateway.billing.conftest import REDIS, drop_redis_prefix, redis_keys, redis_prefix_for_new_test

NOW = 1_800_000_000.0


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = redis_prefix_for_new_test()
    yield prefix
    drop_redis_prefix(prefix)


async def test_four_gateways_overshoot_a_shared_budget_by_at_most_one_request(prefix: str) -> None:
    stores = [RedisCounterStore(REDIS, prefix=prefix) for _ in range(4)]
    gates = [Admission(s, clock=lambda: NOW) for s in stores]
    caller = Principal(tenant="acme", key_id="k1", budget=Budget(period="month", tokens=1000))
    used: list[int] = []

    async def one(i: int) -> None:
        try:
            reservation = await gates[i % 4].admit(caller, Estimate(120, 0))
        except QuotaExceeded:
            return
        await asyncio.sleep(0.005)
        used.append(130)  # the prompt estimate was 10 tokens short
        await gates[i % 4].settle(reservation, tokens=130, nanos=0)

    try:
        await asyncio.gather(*(one(i) for i in range(200)))
        assert sum(used) <= 1000 + 130  # at most one request's worth beyond the budget
        assert len(used) >= 7
    finally:
        for s in stores:
            s.close()


async def test_four_gateways_hold_requests_per_minute_exactly(prefix: str) -> None:
    stores = [RedisCounterStore(REDIS, prefix=prefix) for _ in range(4)]
    gates = [Admission(s, clock=lambda: NOW) for s in stores]
    caller = Principal(
        tenant="acme", key_id="k1", key_limits=RateLimits(rpm=25), tenant_limits=RateLimits(rpm=30)
    )
    try:
        results = await asyncio.gather(
            *(gates[i % 4].admit(caller, Estimate(1, 0)) for i in range(120)), return_exceptions=True
        )
        assert sum(not isinstance(r, RateLimited) for r in results) == 25
        assert all(isinstance(r, RateLimited) or r is not None for r in results)
    finally:
        for s in stores:
            s.close()


async def test_keys_carry_the_prefix_and_the_tenant_as_hash_tag_and_windows_expire(prefix: str) -> None:
    store = RedisCounterStore(REDIS, prefix=prefix)
    gate = Admission(store, clock=lambda: NOW)
    caller = Principal(
        tenant="ac}me{x",
        key_id="k1",
        key_limits=RateLimits(rpm=5),
        tenant_limits=RateLimits(tpm=500),
        budget=Budget(period="day", tokens=10_000),
    )
    try:
        assert await gate.admit(caller, Estimate(10, 0)) is not None
        keys = sorted(k.decode() for k in redis_keys(prefix))
        assert len(keys) == 3
        tags = {k[k.index("{") + 1 : k.index("}")] for k in keys}
        assert tags == {"acme{x"}  # one tag for every key of the request: one Redis Cluster slot
        client = redis.Redis.from_url(REDIS)
        for key in keys:
            ttl = client.ttl(key)
            assert ttl > 0 and (":rate:" not in key or ttl <= 120)
        client.close()
    finally:
        store.close()


async def test_a_settlement_after_its_window_expired_does_not_bring_it_back(prefix: str) -> None:
    store = RedisCounterStore(REDIS, prefix=prefix)
    gate = Admission(store, clock=lambda: NOW)
    caller = Principal(tenant="acme", key_id="k1", key_limits=RateLimits(tpm=100))
    try:
        reservation = await gate.admit(caller, Estimate(50, 0))
        client = redis.Redis.from_url(REDIS)
        client.delete(*redis_keys(prefix))  # as if the window had expired
        await gate.settle(reservation, tokens=10, nanos=0)
        assert redis_keys(prefix) == []
        client.close()
    finally:
        store.close()


def test_a_prefix_with_braces_is_refused() -> None:
    redis_prefix_for_new_test()  # skips without Redis
    with pytest.raises(ValueError, match="braces"):
        RedisCounterStore(REDIS, prefix="maas{x}")
