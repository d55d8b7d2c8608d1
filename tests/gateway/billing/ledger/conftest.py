"""Both ledger stores, for real: SQLite in a temp dir and PostgreSQL on 127.0.0.1 in a fresh schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.billing.ledger import Ledger
from gateway.billing.ledger.sqlite_store import SqliteStore

POSTGRES = os.environ.get("MAAS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_url_for_new_schema() -> tuple[str, str]:
    import psycopg

    schema = "maas_test_" + uuid.uuid4().hex[:12]
    try:
        with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES}: {exc}")
    return f"{POSTGRES}?options=-csearch_path%3D{schema}", schema


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        ledger = Ledger(SqliteStore(tmp_path / "ledger.db"))
        yield ledger
        ledger.close()
        return
    from gateway.billing.ledger.postgres_store import PostgresStore

    url, schema = postgres_url_for_new_schema()
    ledger = Ledger(PostgresStore(url))
    yield ledger
    ledger.close()
    drop_schema(schema)
