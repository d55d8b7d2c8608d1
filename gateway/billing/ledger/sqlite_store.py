"""The embedded ledger: SQLite in WAL mode, fsync on every (group) commit."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from gateway.billing.ledger.records import UsageQuery, UsageRecord, UsageRow
from gateway.billing.ledger.schema import migrate_ledger
from gateway.billing.ledger.sql import (
    COLUMNS,
    insert_sql,
    record_from_row,
    row_values,
    to_usage_row,
    usage_query_sql,
)
from gateway.tenancy.database import SqliteDatabase, connect_sqlite

TIME_BUCKETS = {
    "day": "strftime('%Y-%m-%d', created_at, 'unixepoch')",
    "hour": "strftime('%Y-%m-%dT%H:00', created_at, 'unixepoch')",
    "minute": "strftime('%Y-%m-%dT%H:%M', created_at, 'unixepoch')",
}


class SqliteStore:
    local = True
    """A commit is a write to a local file: ``Ledger`` lets a request alone commit its own record."""

    def __init__(self, path: str | Path, synchronous: bool = True) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._path = str(path)
        # FULL: a committed bill survives power loss; NORMAL (WAL): it survives a killed gateway only.
        self._synchronous = "FULL" if synchronous else "NORMAL"
        migrate_ledger(SqliteDatabase(Path(path)))
        self._write = self._connect()
        self._read_lock = threading.Lock()
        self._read = self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = connect_sqlite(self._path)
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        return conn

    def write_batch(self, records: Sequence[UsageRecord]) -> None:
        conn = self._write
        if len(records) == 1:  # one statement is its own transaction: no BEGIN and COMMIT to run
            conn.execute(insert_sql("?"), row_values(records[0]))
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(insert_sql("?"), [row_values(r) for r in records])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def oldest(self, limit: int) -> list[UsageRecord]:
        """The first ``limit`` records in the order they were written (a spool's replay)."""
        rows = self._write.execute(
            f"SELECT {', '.join(COLUMNS)} FROM usage_records ORDER BY rowid LIMIT ?", (limit,)
        ).fetchall()
        return [record_from_row(row) for row in rows]

    def delete(self, request_ids: Sequence[str]) -> None:
        self._write.executemany("DELETE FROM usage_records WHERE request_id = ?", [(i,) for i in request_ids])

    def query(self, query: UsageQuery) -> list[UsageRow]:
        sql, params = usage_query_sql(query, "?", TIME_BUCKETS)
        with self._read_lock:
            rows = self._read.execute(sql, params).fetchall()
        return [to_usage_row(query, row) for row in rows]

    def count(self) -> int:
        with self._read_lock:
            return int(self._read.execute("SELECT COUNT(*) FROM usage_records").fetchone()[0])

    def close(self) -> None:
        self._write.close()
        self._read.close()
