"""A shared ledger that never loses a record while its database is down: the records go to a local SQLite
spool (fsynced, as durable as the embedded ledger) and are replayed into the shared database, in order,
once it answers again.

So a request is still served, and billed, while PostgreSQL restarts; what the spool holds is not yet in
usage queries (``/v1/usage``, the dashboard) until it is replayed, typically within a second of the
database coming back. Replays are idempotent: a record already written is skipped, never doubled.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from gateway.billing.ledger.records import UsageQuery, UsageRecord, UsageRow
from gateway.billing.ledger.sqlite_store import SqliteStore
from gateway.billing.ledger.store import LedgerStore

logger = logging.getLogger(__name__)

REPLAY_BATCH = 512


class SpooledStore:
    """``primary`` (the shared database) with ``spool`` behind it for the time it is unavailable."""

    def __init__(self, primary: LedgerStore, spool_path: str | Path) -> None:
        self.primary = primary
        self.spool = SqliteStore(spool_path)
        self._lock = threading.Lock()  # the writer thread and close() share the spool
        self._outage = self.spool.count() > 0  # records left from a previous run are replayed first

    def write_batch(self, records: Sequence[UsageRecord]) -> None:
        with self._lock:
            if self._outage and not self._replay():
                self.spool.write_batch(records)  # behind the older ones, in order
                return
            try:
                self.primary.write_batch(records)
            except Exception as exc:
                logger.warning(
                    "ledger database unavailable error=%s: %d record(s) spooled locally",
                    type(exc).__name__,
                    len(records),
                )
                self.spool.write_batch(records)
                self._outage = True

    def replay(self) -> None:
        """Move spooled records into the primary, if there are any and it answers (the writer's idle tick)."""
        with self._lock:
            if self._outage:
                self._replay()

    def _replay(self) -> bool:
        """True once the spool is empty (the caller holds the lock)."""
        while True:
            rows = self.spool.oldest(REPLAY_BATCH)
            if not rows:
                self._outage = False
                logger.info("ledger database back: spool replayed")
                return True
            try:
                self.primary.write_batch(rows)
            except Exception:
                return False  # still down: try again later
            self.spool.delete([r.request_id for r in rows])

    def spooled(self) -> int:
        return self.spool.count()

    def query(self, query: UsageQuery) -> list[UsageRow]:
        return self.primary.query(query)

    def count(self) -> int:
        return self.primary.count()

    def close(self) -> None:
        with self._lock:
            if self._outage:
                self._replay()
            self.primary.close()
            self.spool.close()
