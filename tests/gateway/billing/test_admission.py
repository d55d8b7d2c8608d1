"""Admission on SQLite, PostgreSQL and Redis counters: limits hold under concurrency, budgets settle
exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.billing.admission import Admission, Counters, CounterStore, Estimate, period_bounds
from gateway.billing.redis_counters import RedisCounterStore
from gateway.errors import QuotaExceeded, RateLimited, openai_error
from gateway.tenancy.keystore import Budget, Principal, RateLimits
from tests.gateway.billing.conftest import REDIS, drop_redis_prefix, redis_prefix_for_new_test
from tests.gateway.billing.ledger.conftest import drop_schema, postgres_url_for_new_schema
from tests.gateway.conftest import routed_model

NOW = 1_800_000_000.0  # a fixed clock, in the middle of a minute window


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Counters]:
    if request.param == "redis":
        prefix = redis_prefix_for_new_test()
        redis_store = RedisCounterStore(REDIS, prefix=prefix)
        yield redis_store
        redis_store.close()
        drop_redis_prefix(prefix)
        return
    if request.param == "sqlite":
        store = CounterStore.sqlite(str(tmp_path / "counters.db"))
        yield store
        store.close()
        return
    url, schema = postgres_url_for_new_schema()
    store = CounterStore.postgres(url)
    yield store
    store.close()
    drop_schema(schema)


def admission(store: Counters, clock: list[float]) -> Admission:
    return Admission(store, clock=lambda: clock[0])


async def test_requests_per_minute_hold_exactly_under_50_concurrent_requests(store: Counters) -> None:
    gate = admission(store, [NOW])
    caller = Principal(tenant="acme", key_id="k1", key_limits=RateLimits(rpm=10))
    results = await asyncio.gather(
        *(gate.admit(caller, Estimate(10, 0)) for _ in range(50)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(refused) == 40 and len(results) - len(refused) == 10
    error = refused[0]
    assert (openai_error(error).status, openai_error(error).code) == (429, "rate_limit_exceeded")
    assert error.headers is not None
    assert error.headers["x-ratelimit-limit-requests"] == "10"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(error.headers["retry-after"]) <= 60


async def test_a_new_minute_opens_a_new_window(store: Counters) -> None:
    clock = [NOW]
    gate = admission(store, clock)
    caller = Principal(tenant="acme", key_id="k1", key_limits=RateLimits(rpm=1))
    await gate.admit(caller, Estimate(1, 0))
    with pytest.raises(RateLimited):
        await gate.admit(caller, Estimate(1, 0))
    clock[0] += 60
    assert await gate.admit(caller, Estimate(1, 0)) is not None


async def test_tokens_per_minute_reserve_then_settle_to_actual(store: Counters) -> None:
    gate = admission(store, [NOW])
    caller = Principal(tenant="acme", key_id="k1", tenant_limits=RateLimits(tpm=100))
    first = await gate.admit(caller, Estimate(60, 0))
    assert first is not None and first.headers["x-ratelimit-remaining-tokens"] == "40"
    with pytest.raises(RateLimited) as info:
        await gate.admit(caller, Estimate(60, 0))  # 60 + 60 > 100 while the first is in flight
    assert openai_error(info.value).type == "tokens" and info.value.headers is not None
    assert info.value.headers["x-ratelimit-remaining-tokens"] == "40"
    await gate.settle(first, tokens=20, nanos=0)  # it used far less than it reserved
    assert await gate.admit(caller, Estimate(60, 0)) is not None


async def test_token_budget_overshoots_by_at_most_one_request(store: Counters) -> None:
    gate = admission(store, [NOW])
    caller = Principal(tenant="acme", key_id="k1", budget=Budget(period="month", tokens=1000))

    async def one() -> bool:
        try:
            reservation = await gate.admit(caller, Estimate(120, 0))  # prompt + max_tokens
        except QuotaExceeded:
            return False
        await asyncio.sleep(0.01)
        await gate.settle(reservation, tokens=100, nanos=0)  # used less than the estimate
        return True

    admitted = sum(await asyncio.gather(*(one() for _ in range(50))))
    assert 8 <= admitted <= 10  # 1000 tokens of budget; estimates reserve 120 while in flight
    with pytest.raises(QuotaExceeded) as info:
        for _ in range(20):
            assert await gate.admit(caller, Estimate(120, 0))
    assert (openai_error(info.value).code, openai_error(info.value).status) == ("insufficient_quota", 429)


async def test_money_budget_is_checked_in_nano_units(store: Counters) -> None:
    gate = admission(store, [NOW])
    caller = Principal(tenant="acme", key_id="k1", budget=Budget(period="day", nanos=1_000))
    reservation = await gate.admit(caller, Estimate(1, 900))
    with pytest.raises(QuotaExceeded):
        await gate.admit(caller, Estimate(1, 200))
    await gate.settle(reservation, tokens=1, nanos=100)
    assert await gate.admit(caller, Estimate(1, 200)) is not None


async def test_unlimited_callers_skip_the_database(store: Counters) -> None:
    gate = admission(store, [NOW])
    assert not gate.needed(Principal(tenant="acme", key_id="k1"))
    assert await gate.admit(Principal(tenant="acme", key_id="k1"), Estimate(10**9, 10**9)) is None


def test_estimate_covers_every_completion_the_request_may_produce() -> None:
    model = routed_model(input_per_million="1", output_per_million="2")
    assert Admission.estimate(model, prompt_tokens=10, max_tokens=5, n=2) == Estimate(
        20, 10 * 1000 + 10 * 2000
    )
    unbounded = Admission.estimate(model, prompt_tokens=48, max_tokens=None, n=1)
    assert unbounded.tokens == model.context_length


def test_budget_periods_are_calendar_days_and_months_in_utc() -> None:
    start, end = period_bounds("month", 1_800_000_000)  # 2027-01-15
    assert (end - start) == 31 * 86_400 and start % 86_400 == 0
    start, end = period_bounds("day", 1_800_000_000)
    assert end - start == 86_400 and start <= 1_800_000_000 < end


@pytest.mark.parametrize("database", ["sqlite", "postgres", "redis"])
async def test_two_gateway_replicas_sharing_the_database_share_the_limit(
    database: str, tmp_path: Path
) -> None:
    """Each replica has its own connection; the limit holds across both."""
    schema = prefix = None
    stores: list[Counters]
    if database == "redis":
        prefix = redis_prefix_for_new_test()
        stores = [RedisCounterStore(REDIS, prefix=prefix), RedisCounterStore(REDIS, prefix=prefix)]
    elif database == "postgres":
        url, schema = postgres_url_for_new_schema()
        stores = [CounterStore.postgres(url), CounterStore.postgres(url)]
    else:
        stores = [CounterStore.sqlite(str(tmp_path / "shared.db")) for _ in range(2)]
    try:
        gates = [admission(s, [NOW]) for s in stores]
        caller = Principal(tenant="acme", key_id="k1", tenant_limits=RateLimits(rpm=7))
        results = await asyncio.gather(
            *(gates[i % 2].admit(caller, Estimate(1, 0)) for i in range(50)), return_exceptions=True
        )
        assert sum(not isinstance(r, RateLimited) for r in results) == 7
    finally:
        for s in stores:
            s.close()
        if schema:
            drop_schema(schema)
        if prefix:
            drop_redis_prefix(prefix)
