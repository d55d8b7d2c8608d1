"""The shared ledger for several gateway replicas: PostgreSQL (``MAAS_DATABASE_URL``)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from gateway.billing.ledger.records import UsageQuery, UsageRecord, UsageRow
from gateway.billing.ledger.schema import migrate_ledger
from gateway.billing.ledger.sql import (
    insert_sql,
    row_values,
    to_usage_row,
    usage_query_sql,
)
from gateway.tenancy.database import PostgresDatabase

_UTC = "to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', '{}')"
TIME_BUCKETS = {
    "day": _UTC.format("YYYY-MM-DD"),
    "hour": _UTC.format('YYYY-MM-DD"T"HH24:00'),
    "minute": _UTC.format('YYYY-MM-DD"T"HH24:MI'),
}


class PostgresStore:
    """Both connections are opened again after the server went away (a restart, a failover): a call made
    while it is down raises ``psycopg.OperationalError``, the next one after it is back succeeds."""

    def __init__(self, url: str, synchronous: bool = True) -> None:
        self._url = url
        self._synchronous = synchronous
        migrate_ledger(PostgresDatabase(url))  # safe from several gateways starting at once
        self._write = self._connect()
        self._read = self._connect()
        self._read_lock = threading.Lock()

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
        if not self._synchronous:
            conn.execute("SET synchronous_commit TO off")
        return conn

    def write_batch(self, records: Sequence[UsageRecord]) -> None:
        if self._write.closed or self._write.broken:
            self._write = self._connect()
        with self._write.transaction(), self._write.cursor() as cur:
            cur.executemany(insert_sql("%s"), [row_values(r) for r in records])

    def _reader(self) -> Any:
        if self._read.closed or self._read.broken:
            self._read = self._connect()
        return self._read

    def query(self, query: UsageQuery) -> list[UsageRow]:
        sql, params = usage_query_sql(query, "%s", TIME_BUCKETS)
        with self._read_lock:
            rows = self._reader().execute(sql, params).fetchall()
        return [to_usage_row(query, row) for row in rows]

    def count(self) -> int:
        with self._read_lock:
            row = self._reader().execute("SELECT COUNT(*) FROM usage_records").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._write.close()
        self._read.close()
