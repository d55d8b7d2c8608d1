"""Settling a request: its record goes to the ledger's writer at once, and the answer waits until it is
durable (or is refused when it cannot be written)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from backends.base import Usage
from gateway.billing.ledger import Ledger, UsageQuery, UsageRecord, UsageRow
from gateway.billing.ledger.sqlite_store import SqliteStore
from gateway.billing.metering import Meter, Progress
from gateway.errors import LedgerUnavailable
from gateway.observability.metrics import GatewayMetrics
from gateway.tenancy.keystore import Principal
from tests.gateway.conftest import routed_model


class GatedStore:
    """A real SQLite store whose commits wait for ``release`` (a slow disk), or fail (``broken``)."""

    def __init__(self, path: Path, broken: bool = False) -> None:
        self.inner = SqliteStore(path)
        self.broken = broken
        self.arrived = threading.Event()
        self.release = threading.Event()

    def write_batch(self, records: Sequence[UsageRecord]) -> None:
        self.arrived.set()
        self.release.wait(10)
        if self.broken:
            raise OSError("disk gone")
        self.inner.write_batch(records)

    def query(self, query: UsageQuery) -> list[UsageRow]:
        return self.inner.query(query)

    def count(self) -> int:
        return self.inner.count()

    def close(self) -> None:
        self.inner.close()


def meter(ledger: Ledger) -> Meter:
    return Meter(
        ledger=ledger,
        metrics=GatewayMetrics(),
        request_id="req-1",
        idempotency_key=None,
        principal=Principal(tenant="acme", key_id="key_1"),
        model=routed_model(),
        endpoint="embeddings",
        stream=False,
        started=time.perf_counter(),
    )


async def test_the_record_is_committing_before_the_caller_waits_and_the_wait_ends_when_durable(
    tmp_path: Path,
) -> None:
    store = GatedStore(tmp_path / "ledger.db")
    ledger = Ledger(store)
    try:
        settled = meter(ledger).settling(Progress(usage=Usage(12, 0)), "ok")
        # handed over already: the writer thread is on it while the caller builds its answer
        assert await asyncio.to_thread(store.arrived.wait, 5)
        waiting = asyncio.ensure_future(settled)
        await asyncio.sleep(0.05)
        assert not waiting.done()  # not durable yet: the answer may not go out
        store.release.set()
        await asyncio.wait_for(waiting, 5)
        assert store.count() == 1
    finally:
        store.release.set()
        ledger.close()


async def test_a_record_that_cannot_be_written_refuses_the_answer(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "ledger.db", broken=True)
    store.release.set()
    ledger = Ledger(store)
    try:
        with pytest.raises(LedgerUnavailable):
            await meter(ledger).settle(Progress(usage=Usage(12, 0)), "ok")
        assert store.count() == 0
    finally:
        ledger.close()


def requests_counted(metrics: GatewayMetrics) -> float:
    value = metrics.registry.get_sample_value(
        "maas_requests_total",
        {"model": "m", "tenant": "acme", "chip": "cpu", "pool": "own", "status": "ok", "error_type": ""},
    )
    return value or 0.0


async def test_accounting_left_for_later_counts_the_record_once_when_called(tmp_path: Path) -> None:
    ledger = Ledger(SqliteStore(tmp_path / "ledger.db"))
    try:
        settling = meter(ledger)
        metrics = settling.metrics
        assert isinstance(metrics, GatewayMetrics)
        await settling.settling(Progress(usage=Usage(12, 3)), "ok", account_later=True)
        assert ledger.store.count() == 1  # durable before the answer goes out, as always
        assert requests_counted(metrics) == 0  # the metrics wait until the answer is out
        settling.account()
        settling.account()  # a second call (an error path after the background) counts nothing more
        assert requests_counted(metrics) == 1
        counted = meter(ledger)
        await counted.settle(Progress(usage=Usage(1, 1)), "ok")  # the default: counted at once
        assert requests_counted(counted.metrics) == 1  # type: ignore[arg-type]
    finally:
        ledger.close()


class ThreadNoting(SqliteStore):
    """The real local store, noting the thread of each commit; ``broken``: its disk has gone."""

    def __init__(self, path: Path, broken: bool = False) -> None:
        super().__init__(path)
        self.threads: list[str] = []
        self.broken = broken

    def write_batch(self, records: Sequence[UsageRecord]) -> None:
        self.threads.append(threading.current_thread().name)
        if self.broken:
            raise OSError("disk gone")
        super().write_batch(records)


async def test_a_request_alone_is_durable_on_its_own_thread_and_a_client_gone_is_committed_by_the_writer(
    tmp_path: Path,
) -> None:
    store = ThreadNoting(tmp_path / "ledger.db")
    ledger = Ledger(store)
    try:
        alone = meter(ledger)
        alone.alone = lambda: True
        settling = alone.settling(Progress(usage=Usage(12, 0)), "ok")
        assert store.count() == 1  # committed when handed over, before the caller awaits
        await settling
        gone = meter(ledger)
        gone.request_id = "req-gone"
        gone.alone = lambda: True
        gone.settle_nowait(Progress(), "cancelled")  # nobody waits for it: the writer thread commits it
        for _ in range(200):
            if store.count() == 2:
                break
            await asyncio.sleep(0.01)
        assert store.threads == [threading.current_thread().name, "maas-ledger"]
    finally:
        ledger.close()


async def test_a_record_that_cannot_be_written_by_a_request_alone_refuses_its_answer(tmp_path: Path) -> None:
    store = ThreadNoting(tmp_path / "ledger.db", broken=True)
    ledger = Ledger(store)
    try:
        alone = meter(ledger)
        alone.alone = lambda: True
        with pytest.raises(LedgerUnavailable):
            await alone.settle(Progress(usage=Usage(12, 0)), "ok")
        assert store.threads == [threading.current_thread().name]
    finally:
        ledger.close()
