"""The interface of a database behind the ledger (SQLite, PostgreSQL, PostgreSQL with a local spool)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.billing.ledger.records import UsageQuery, UsageRecord, UsageRow


class LedgerStore(Protocol):
    """A database behind the ledger. Writes are idempotent: a request id or (tenant, idempotency key)
    already present is skipped, never duplicated. A store whose commit is a local file write says so with
    a class attribute ``local = True`` (``SqliteStore``): ``Ledger`` then lets a request alone commit on
    its own thread; a store without it is always written by the ledger's writer thread."""

    def write_batch(self, records: Sequence[UsageRecord]) -> None: ...

    def query(self, query: UsageQuery) -> list[UsageRow]: ...

    def count(self) -> int: ...

    def close(self) -> None: ...
