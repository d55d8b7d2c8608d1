"""The tenancy stores on both databases, for real: SQLite in a temp dir, PostgreSQL in a fresh schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.tenancy.database import Database, PostgresDatabase, SqliteDatabase
from tests.gateway.billing.ledger.conftest import drop_schema, postgres_url_for_new_schema


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search path is a schema of this test's own, dropped after it."""
    url, schema = postgres_url_for_new_schema()
    yield url
    drop_schema(schema)


@pytest.fixture(params=["sqlite", "postgres"])
def connect(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Database]]:
    """Opens a new connection to one database per call: each call is another gateway on it."""
    opened: list[Database] = []
    schema = None
    if request.param == "postgres":
        url, schema = postgres_url_for_new_schema()

    def connect() -> Database:
        database: Database = PostgresDatabase(url) if schema else SqliteDatabase(tmp_path / "maas.db")
        opened.append(database)
        return database

    yield connect
    for database in opened:
        database.close()
    if schema:
        drop_schema(schema)
