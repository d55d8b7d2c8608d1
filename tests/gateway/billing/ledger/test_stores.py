"""The ledger on SQLite and on PostgreSQL: durable, idempotent, grouped and priced exactly."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from backends.base import Usage
from gateway.billing.ledger import Ledger, UsageQuery, UsageRecord
from gateway.billing.ledger.records import charge_nanos
from gateway.billing.ledger.sqlite_store import SqliteStore
from gateway.billing.metering import Meter, Progress
from tests.gateway.billing.ledger.conftest import drop_schema, postgres_url_for_new_schema

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


def estimated_flags(ledger: Ledger) -> dict[str, bool]:
    rows = ledger.store._read.execute(  # type: ignore[attr-defined]
        "SELECT request_id, usage_estimated FROM usage_records"
    ).fetchall()
    return {str(request_id): bool(flag) for request_id, flag in rows}


async def test_estimated_usage_is_marked_per_record(ledger: Ledger) -> None:
    await ledger.record(record("exact"))
    await ledger.record(record("estimated", usage_estimated=True))
    assert estimated_flags(ledger) == {"exact": False, "estimated": True}


async def test_the_meter_carries_an_estimated_usage_into_the_ledger(
    ledger: Ledger, make_meter: Callable[..., Meter]
) -> None:
    await make_meter("engine").settle(Progress(usage=Usage(7, 3)), "ok")
    await make_meter("upstream").settle(Progress(usage=Usage(7, 3, estimated=True)), "ok")
    assert estimated_flags(ledger) == {"engine": False, "upstream": True}
    [row] = await ledger.query(UsageQuery(group_by=("model",)))
    assert (row.requests, row.prompt_tokens, row.completion_tokens) == (2, 14, 6)


OLD_TABLE = """CREATE TABLE usage_records (
    request_id TEXT PRIMARY KEY, idempotency_key TEXT, tenant TEXT NOT NULL, key_id TEXT NOT NULL,
    model TEXT NOT NULL, deployment TEXT NOT NULL, chip TEXT NOT NULL, pool TEXT NOT NULL,
    endpoint TEXT NOT NULL, stream BOOLEAN NOT NULL, status TEXT NOT NULL, error_type TEXT,
    finish_reason TEXT, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL, ttft_s REAL, duration_s REAL NOT NULL, currency TEXT NOT NULL,
    price_input_per_million TEXT NOT NULL, price_output_per_million TEXT NOT NULL,
    charge_nanos BIGINT NOT NULL, created_at REAL NOT NULL)"""
OLD_ROW = """INSERT INTO usage_records VALUES ('old', NULL, 'acme', 'key_1', 'm1', 'model-m1', 'cpu', 'own',
    'chat.completions', FALSE, 'ok', NULL, 'stop', 10, 5, 0, 0.1, 0.5, 'USD', '0.05', '0.10', 1000, 1.0)"""


async def test_a_sqlite_ledger_from_before_the_column_gets_it_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_TABLE)
        conn.execute(OLD_ROW)
    for i in range(2):  # opening it again finds the column already there
        ledger = Ledger(SqliteStore(path))
        await ledger.record(record(f"new-{i}", usage_estimated=True))
        flags = estimated_flags(ledger)
        ledger.close()
    assert flags == {"old": False, "new-0": True, "new-1": True}


async def test_a_postgres_ledger_from_before_the_column_gets_it_on_open() -> None:
    import psycopg

    from gateway.billing.ledger.postgres_store import PostgresStore

    url, schema = postgres_url_for_new_schema()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(OLD_TABLE.replace(" REAL", " DOUBLE PRECISION"))  # type: ignore[arg-type]
            conn.execute(OLD_ROW)  # type: ignore[arg-type]
        for i in range(2):
            ledger = Ledger(PostgresStore(url))
            await ledger.record(record(f"new-{i}", usage_estimated=True))
            flags = estimated_flags(ledger)
            ledger.close()
        assert flags == {"old": False, "new-0": True, "new-1": True}
    finally:
        drop_schema(schema)


def test_crash_durability_skips_the_fsync_and_keeps_records_through_a_kill(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from gateway.billing.ledger import open_ledger

    path = tmp_path / "maas.db"
    child = (
        "import asyncio, sys, time\n"
        "from gateway.billing.ledger import open_ledger\n"
        "from tests.gateway.billing.ledger.test_stores import record\n"
        f"ledger = open_ledger(None, {str(path)!r}, 'crash')\n"
        "async def main():\n"
        "    await asyncio.gather(*(ledger.record(record(f'r{i}')) for i in range(50)))\n"
        "asyncio.run(main())\n"
        "print('recorded', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "recorded"
    proc.send_signal(signal.SIGKILL)  # no close, no checkpoint: only what was committed
    proc.wait()
    reopened = open_ledger(None, str(path))
    try:
        assert reopened.store.count() == 50
    finally:
        reopened.close()
    conn = sqlite3.connect(path)
    assert SqliteStore(path, synchronous=False)._write.execute("PRAGMA synchronous").fetchone() == (
        1,
    )  # NORMAL
    assert SqliteStore(path)._write.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    conn.close()


def test_an_unknown_durability_is_refused() -> None:
    from gateway.billing.ledger import open_ledger

    with pytest.raises(ValueError, match="power-loss"):
        open_ledger(None, "/nonexistent/maas.db", "sometimes")
