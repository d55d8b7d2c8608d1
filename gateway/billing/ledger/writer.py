"""Group commit: records from concurrent requests are written together, each caller told when its own
record is durable.

One writer thread owns the store's write connection. A caller's ``await ledger.record(r)`` returns once
the transaction that holds ``r`` has committed, so a response can wait for its bill to be on disk while
the database sees one transaction per batch, not per request.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from gateway.billing.ledger.records import UsageQuery, UsageRecord, UsageRow
from gateway.billing.ledger.store import LedgerStore

logger = logging.getLogger(__name__)

MAX_BATCH = 512
IDLE_S = 1.0


class Ledger:
    """Async façade over a store, with a group-commit writer thread."""

    def __init__(self, store: LedgerStore, on_idle: Callable[[], None] | None = None) -> None:
        """``on_idle`` runs in the writer thread about once a second while no record arrives."""
        self.store = store
        self._on_idle = on_idle
        # SimpleQueue: a put is one C call, no lock or condition in Python on the request path.
        self._queue: queue.SimpleQueue[tuple[UsageRecord, Future[None]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="maas-ledger", daemon=True)
        self._thread.start()

    def submit(self, record: UsageRecord) -> Future[None]:
        """Queue a record; the future completes when it is durable."""
        done: Future[None] = Future()
        self._queue.put((record, done))
        return done

    async def record(self, record: UsageRecord) -> None:
        """Write a record and wait until it is durable."""
        await asyncio.wrap_future(self.submit(record))

    async def query(self, query: UsageQuery) -> list[UsageRow]:
        return await asyncio.to_thread(self.store.query, query)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=IDLE_S)
            except queue.Empty:
                if self._on_idle is not None:
                    self._on_idle()
                continue
            if item is None:
                return
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(more)
            try:
                self.store.write_batch([record for record, _ in batch])
            except Exception as exc:
                logger.error("ledger write failed records=%d error=%s", len(batch), type(exc).__name__)
                for _, done in batch:
                    done.set_exception(exc)
            else:
                for _, done in batch:
                    done.set_result(None)

    def close(self) -> None:
        """Write what is queued, then close the store."""
        self._queue.put(None)
        self._thread.join(timeout=30)
        self.store.close()


DURABILITIES = ("power-loss", "crash")
"""What an answered request's record survives: see ``open_ledger``."""


def open_ledger(database_url: str | None, sqlite_path: str, durability: str = "power-loss") -> Ledger:
    """PostgreSQL when ``database_url`` is given (postgresql://...), with a local spool for the time it is
    down (``spool.SpooledStore``); else SQLite at ``sqlite_path``.

    ``durability``: ``power-loss`` (default) — an answered request's record survives a power loss (fsync
    on every group commit); ``crash`` — it survives the gateway being killed or crashing, not a power loss
    or an operating-system crash (no fsync per commit: SQLite ``synchronous=NORMAL`` in WAL mode,
    PostgreSQL ``synchronous_commit=off``), for about 1.5 ms less latency per request on a typical disk.
    """
    if durability not in DURABILITIES:
        raise ValueError(f"ledger durability must be one of {', '.join(DURABILITIES)}, not {durability!r}")
    if database_url:
        from gateway.billing.ledger.postgres_store import PostgresStore
        from gateway.billing.ledger.spool import SpooledStore

        # While PostgreSQL is down, records wait in a local spool beside the embedded database.
        spool = Path(sqlite_path).with_name("ledger-spool.db")
        store = SpooledStore(PostgresStore(database_url, synchronous=durability == "power-loss"), spool)
        return Ledger(store, on_idle=store.replay)
    from gateway.billing.ledger.sqlite_store import SqliteStore

    return Ledger(SqliteStore(sqlite_path, synchronous=durability == "power-loss"))
