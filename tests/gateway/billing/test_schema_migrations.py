"""The ledger's and the counters' tables are versioned migrations too: gateways opening one fresh database
at the same moment all start, and each version is applied once; one SQLite file holds every component."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from gateway.billing.admission import CounterStore
from gateway.billing.ledger.postgres_store import PostgresStore
from gateway.billing.ledger.sqlite_store import SqliteStore
from gateway.tenancy.keystore import KeyStore
from tests.gateway.billing.ledger.conftest import drop_schema, postgres_url_for_new_schema


def start_at_once(count: int, open_stores: Callable[[], list[object]]) -> list[BaseException]:
    """``count`` gateways open their stores at the same moment; the errors they met."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []
    opened: list[object] = []

    def gateway() -> None:
        barrier.wait()
        try:
            opened.extend(open_stores())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=gateway) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in opened:
        store.close()  # type: ignore[attr-defined]
    return errors


def test_eight_gateways_opening_a_fresh_postgres_ledger_and_counters_at_once_all_start() -> None:
    import psycopg

    url, schema = postgres_url_for_new_schema()
    try:
        errors = start_at_once(8, lambda: [PostgresStore(url), CounterStore.postgres(url)])
        assert errors == []
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT component, version FROM schema_migrations ORDER BY 1, 2").fetchall()
        assert rows == [("counters", 1), ("ledger", 1), ("ledger", 2)]
    finally:
        drop_schema(schema)


def test_one_sqlite_file_holds_every_components_versions(tmp_path: Path) -> None:
    path = tmp_path / "maas.db"
    errors = start_at_once(4, lambda: [SqliteStore(path), CounterStore.sqlite(str(path)), KeyStore(path)])
    assert errors == []
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT component, COUNT(*) FROM schema_migrations GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert rows == [("counters", 1), ("ledger", 2), ("tenancy", 4)]
