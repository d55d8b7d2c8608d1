"""PostgreSQL going away under load (every connection dropped, new ones refused, then back, as in a
restart): every record is still durable when its request is answered (in the local spool), and all of
them reach PostgreSQL exactly once when it answers again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.billing.ledger import Ledger
from gateway.billing.ledger.postgres_store import PostgresStore
from gateway.billing.ledger.spool import SpooledStore
from tests.faults import TcpProxy
from tests.gateway.billing.ledger.conftest import drop_schema, postgres_url_for_new_schema
from tests.gateway.billing.ledger.test_stores import record


@pytest.fixture
def through_proxy() -> Iterator[tuple[str, str, TcpProxy]]:
    """(url through the proxy, direct url, proxy) for a fresh schema."""
    direct, schema = postgres_url_for_new_schema()
    proxy = TcpProxy(("127.0.0.1", 5432))
    proxy.up()
    yield direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"), direct, proxy
    proxy.down()
    drop_schema(schema)


async def test_records_written_while_postgres_is_down_are_spooled_then_replayed_once(
    through_proxy: tuple[str, str, TcpProxy], tmp_path: Path
) -> None:
    url, direct, proxy = through_proxy
    store = SpooledStore(PostgresStore(url), tmp_path / "spool.db")
    ledger = Ledger(store, on_idle=store.replay)
    truth = PostgresStore(direct)
    await asyncio.gather(*(ledger.record(record(f"before-{i}")) for i in range(40)))
    assert truth.count() == 40

    proxy.down()
    # Every caller is told its record is durable, though the database is gone.
    await asyncio.gather(*(ledger.record(record(f"during-{i}")) for i in range(60)))
    await ledger.record(record("retry-1", idempotency_key="idem"))
    await ledger.record(record("retry-2", idempotency_key="idem"))  # the client's retry: billed once
    assert store.spooled() == 61 and truth.count() == 40

    proxy.up()
    deadline = time.monotonic() + 15
    while store.spooled() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert store.spooled() == 0
    assert truth.count() == 101
    await ledger.record(record("after"))  # and the shared database takes writes directly again
    assert truth.count() == 102 and store.spooled() == 0
    ledger.close()
    truth.close()


async def test_a_spool_left_by_a_stopped_gateway_is_replayed_by_the_next(
    through_proxy: tuple[str, str, TcpProxy], tmp_path: Path
) -> None:
    url, direct, proxy = through_proxy
    spool = tmp_path / "spool.db"
    first = SpooledStore(PostgresStore(url), spool)
    proxy.down()
    first.write_batch([record(f"r{i}") for i in range(5)])
    first.spool.close()  # stopped while the database was still down
    proxy.up()
    second = SpooledStore(PostgresStore(url), spool)
    second.write_batch([record("new")])  # the old records go first, then this one
    truth = PostgresStore(direct)
    assert truth.count() == 6 and second.spooled() == 0
    second.close()
    truth.close()
