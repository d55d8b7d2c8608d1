"""A request alone commits its own record when the ledger is a local file and its writer is idle; else
the record goes to the writer thread. Either way it is durable when the caller is told so."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.billing.ledger import Ledger, UsageRecord
from gateway.billing.ledger import writer as ledger_writer
from gateway.billing.ledger.sqlite_store import SqliteStore
from tests.gateway.billing.ledger.test_stores import record


class WatchedStore(SqliteStore):
    """The real SQLite store, noting which thread commits each batch; ``hold`` makes a commit wait."""

    def __init__(self, path: Path, *, delay_s: float = 0.0, broken: bool = False) -> None:
        super().__init__(path)
        self.threads: list[str] = []
        self.delay_s = delay_s
        self.broken = broken
        self.hold = threading.Event()
        self.hold.set()
        self.committing = threading.Event()

    def write_batch(self, records: Sequence[UsageRecord]) -> None:
        self.threads.append(threading.current_thread().name)
        self.committing.set()
        self.hold.wait(10)
        time.sleep(self.delay_s)
        if self.broken:
            raise OSError("disk gone")
        super().write_batch(records)


class RemoteStore(WatchedStore):
    """As a shared database would be: its commits never run on the caller's thread."""

    local = False


def test_a_request_alone_commits_its_record_itself_and_it_is_durable_when_submit_returns(
    tmp_path: Path,
) -> None:
    store = WatchedStore(tmp_path / "ledger.db")
    ledger = Ledger(store)
    try:
        done = ledger.submit(record("alone-1"), alone=True)
        assert done.done() and done.exception() is None
        assert store.count() == 1
        assert store.threads == [threading.current_thread().name]
    finally:
        ledger.close()


def test_a_request_among_others_hands_its_record_to_the_writer_thread(tmp_path: Path) -> None:
    store = WatchedStore(tmp_path / "ledger.db")
    ledger = Ledger(store)
    try:
        ledger.submit(record("busy-1")).result(timeout=5)
        assert store.threads == ["maas-ledger"]
        assert store.count() == 1
    finally:
        ledger.close()


def test_while_the_writer_commits_a_request_alone_waits_for_its_next_batch(tmp_path: Path) -> None:
    store = WatchedStore(tmp_path / "ledger.db")
    ledger = Ledger(store)
    try:
        store.hold.clear()
        first = ledger.submit(record("first"))
        assert store.committing.wait(5)  # the writer thread is inside its commit, the disk slow
        second = ledger.submit(record("second"), alone=True)
        assert not second.done()  # not committed on the caller's thread beside the writer's
        store.hold.set()
        first.result(timeout=5)
        second.result(timeout=5)
        assert store.threads == ["maas-ledger", "maas-ledger"]
        assert store.count() == 2
    finally:
        store.hold.set()
        ledger.close()


def test_a_shared_database_is_never_written_on_the_callers_thread(tmp_path: Path) -> None:
    store = RemoteStore(tmp_path / "ledger.db")
    ledger = Ledger(store)
    try:
        ledger.submit(record("remote-1"), alone=True).result(timeout=5)
        assert store.threads == ["maas-ledger"]
    finally:
        ledger.close()


def test_after_a_stalled_commit_on_the_callers_thread_the_writer_thread_commits_for_a_while(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WatchedStore(tmp_path / "ledger.db", delay_s=ledger_writer.SLOW_INLINE_S + 0.02)
    ledger = Ledger(store)
    try:
        assert ledger.submit(record("stalled"), alone=True).done()
        store.delay_s = 0.0
        ledger.submit(record("after"), alone=True).result(timeout=5)
        assert store.threads == [threading.current_thread().name, "maas-ledger"]
        assert "the writer thread commits for the next" in caplog.text
    finally:
        ledger.close()


def test_a_commit_that_fails_on_the_callers_thread_fails_its_record_and_writes_nothing(
    tmp_path: Path,
) -> None:
    store = WatchedStore(tmp_path / "ledger.db", broken=True)
    ledger = Ledger(store)
    try:
        done = ledger.submit(record("lost"), alone=True)
        assert done.done() and isinstance(done.exception(), OSError)
        assert store.count() == 0
    finally:
        ledger.close()
