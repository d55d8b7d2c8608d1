"""The ledger on SQLite and on PostgreSQL: durable, idempotent, grouped and priced exactly."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from decimal import Decimal

from gateway.ledger import Ledger, UsageQuery, UsageRecord
from gateway.ledger.records import charge_nanos

NOW = time.time()


def record(request_id: str, **changes: object) -> UsageRecord:
    base = UsageRecord(
        request_id=request_id,
        idempotency_key=None,
        tenant="acme",
        key_id="key_1",
        model="m1",
        deployment="model-m1",
        chip="cpu",
        pool="own",
        endpoint="chat.completions",
        stream=False,
        status="ok",
        error_type=None,
        finish_reason="stop",
        prompt_tokens=10,
        completion_tokens=5,
        cached_tokens=0,
        ttft_s=0.1,
        duration_s=0.5,
        currency="USD",
        price_input_per_million="0.05",
        price_output_per_million="0.10",
        charge_nanos=charge_nanos(10, 5, Decimal("0.05"), Decimal("0.10")),
        created_at=NOW,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_charge_is_exact_in_nano_units() -> None:
    assert charge_nanos(1_000_000, 0, Decimal("0.05"), Decimal("0.10")) == 50_000_000
    assert charge_nanos(37, 8, Decimal("0.05"), Decimal("0.10")) == 37 * 50 + 8 * 100
    assert charge_nanos(1, 0, Decimal("0.0000001"), Decimal(0)) == 0  # rounds half up, once


async def test_records_are_durable_when_record_returns(ledger: Ledger) -> None:
    await ledger.record(record("r1"))
    assert ledger.store.count() == 1


async def test_concurrent_records_are_group_committed_without_loss(ledger: Ledger) -> None:
    await asyncio.gather(*(ledger.record(record(f"r{i}")) for i in range(300)))
    assert ledger.store.count() == 300
    [row] = await ledger.query(UsageQuery(group_by=("model",)))
    assert (row.requests, row.prompt_tokens, row.completion_tokens) == (300, 3000, 1500)
    assert row.charge_nanos == 300 * (10 * 50 + 5 * 100)


async def test_retries_are_never_billed_twice(ledger: Ledger) -> None:
    await ledger.record(record("r1"))
    await ledger.record(record("r1"))  # the same attempt written twice
    await ledger.record(record("r2", idempotency_key="idem-1"))
    await ledger.record(record("r3", idempotency_key="idem-1"))  # a client retry
    await ledger.record(record("r4", idempotency_key="idem-1", tenant="other"))  # another tenant's key
    assert ledger.store.count() == 3


async def test_grouping_and_time_range_and_tenant_filter(ledger: Ledger) -> None:
    await ledger.record(record("a", tenant="acme", model="m1"))
    await ledger.record(record("b", tenant="acme", model="m2", chip="ascend", pool="rented"))
    await ledger.record(record("c", tenant="globex", model="m1"))
    await ledger.record(record("old", tenant="acme", model="m1", created_at=NOW - 86_400 * 3))

    by_tenant = await ledger.query(UsageQuery(group_by=("tenant",)))
    assert {r.group["tenant"]: r.requests for r in by_tenant} == {"acme": 3, "globex": 1}

    recent = await ledger.query(UsageQuery(since=NOW - 60, group_by=("tenant", "model")))
    assert {(r.group["tenant"], r.group["model"]): r.requests for r in recent} == {
        ("acme", "m1"): 1,
        ("acme", "m2"): 1,
        ("globex", "m1"): 1,
    }
    only_acme = await ledger.query(UsageQuery(tenant="acme", group_by=("chip", "pool")))
    assert {(r.group["chip"], r.group["pool"]) for r in only_acme} == {("cpu", "own"), ("ascend", "rented")}
    days = await ledger.query(UsageQuery(group_by=("day",)))
    assert len(days) == 2 and all(len(r.group["day"]) == 10 for r in days)


async def test_injection_strings_are_stored_as_data(ledger: Ledger) -> None:
    evil = "x'); DROP TABLE usage_records; --"
    await ledger.record(record("r1", tenant=evil, model=evil))
    rows = await ledger.query(UsageQuery(tenant=evil, group_by=("tenant", "model")))
    assert [(r.group["tenant"], r.group["model"]) for r in rows] == [(evil, evil)]
    assert ledger.store.count() == 1
