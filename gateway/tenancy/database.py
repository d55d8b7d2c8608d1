"""The database under the tenancy stores: SQLite (the embedded default) or PostgreSQL (several gateways).

Both stores write one dialect of SQL with ``?`` placeholders; the PostgreSQL connection turns them into
``%s``. Parameters are always passed apart from the SQL, never formatted into it. A connection serves one
caller at a time (a reentrant lock): ``transaction()`` holds it for the whole transaction.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgres"]


class Database(Protocol):
    """One connection to the shared state's database."""

    dialect: Dialect
    path: Path | None
    """The SQLite file; None for PostgreSQL."""

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; the rows it returns (none for a write)."""
        ...

    def rowcount(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one write; how many rows it changed."""
        ...

    def transaction(self) -> Any:
        """A context manager: one transaction, committed on exit, rolled back on an exception."""
        ...

    def close(self) -> None: ...


SQLITE_WAIT_S = 10.0  # how long a connection waits for another one's write lock


def connect_sqlite(path: Path | str) -> sqlite3.Connection:
    """A connection to the SQLite file in autocommit mode and WAL journal, waiting for other writers.

    SQLite waits (its busy timeout) for a write lock, but not to switch a new file to WAL, which needs the
    file alone: two gateways or commands opening a new file at once get "database is locked" from that
    pragma at once. It is retried until the wait is up.
    """
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=SQLITE_WAIT_S)
    deadline = time.monotonic() + SQLITE_WAIT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return conn
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.02)


class SqliteDatabase:
    dialect: Dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path: Path | None = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = connect_sqlite(path)
        self._lock = threading.RLock()

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def rowcount(self, sql: str, params: Sequence[object] = ()) -> int:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).rowcount

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")  # the writer's lock on the file, taken at once
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._conn.close()


class PostgresDatabase:
    """A connection opened again after the server went away (a call made while it is down raises
    ``psycopg.OperationalError``; the next one after it is back succeeds)."""

    dialect: Dialect = "postgres"

    def __init__(self, url: str) -> None:
        self.path: Path | None = None
        self.url = url
        """Where it connects (may hold a password: never logged)."""
        self._url = url
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = self._connect()

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self._url, autocommit=True, connect_timeout=5)

    def _live(self) -> Any:
        if self._depth == 0 and (self._conn.closed or self._conn.broken):
            self._conn = self._connect()
        return self._conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            cursor = self._live().execute(sql.replace("?", "%s"), tuple(params))
            return list(cursor.fetchall()) if cursor.description is not None else []

    def rowcount(self, sql: str, params: Sequence[object] = ()) -> int:
        with self._lock:
            return int(self._live().execute(sql.replace("?", "%s"), tuple(params)).rowcount)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            conn = self._live()
            self._depth += 1
            try:
                with conn.transaction():
                    yield
            finally:
                self._depth -= 1

    def close(self) -> None:
        self._conn.close()


def open_database(database_url: str | None, sqlite_path: Path) -> Database:
    """PostgreSQL when ``database_url`` is set (``MAAS_DATABASE_URL``), else SQLite at ``sqlite_path``."""
    if database_url:
        return PostgresDatabase(database_url)
    return SqliteDatabase(sqlite_path)
