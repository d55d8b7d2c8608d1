"""Versioned migrations on SQLite and PostgreSQL: applied once, at start, from any number of gateways at
once; a database newer than the gateway is refused; a failed migration leaves nothing behind."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.tenancy.database import Database
from gateway.tenancy.keystore import KeyStore, hash_key
from gateway.tenancy.migrations import Migration, SchemaTooNew, current_version, migrate, statements
from gateway.tenancy.schema import COMPONENT, MIGRATIONS, migrate_tenancy

Connect = Callable[[], Database]


def test_a_fresh_database_is_migrated_to_the_latest_version_once(connect: Connect) -> None:
    database = connect()
    assert migrate_tenancy(database) == [m.version for m in MIGRATIONS]
    assert current_version(database, COMPONENT) == MIGRATIONS[-1].version
    assert migrate_tenancy(connect()) == []  # the next gateway to start finds nothing to do


def test_eight_gateways_migrating_at_once_apply_each_version_exactly_once(connect: Connect) -> None:
    gateways = [connect() for _ in range(8)]
    start = threading.Barrier(len(gateways))
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def run(database: Database) -> None:
        start.wait()
        try:
            applied.append(migrate_tenancy(database))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(g,)) for g in gateways]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(v for versions in applied for v in versions) == [m.version for m in MIGRATIONS]
    rows = gateways[0].execute("SELECT version FROM schema_migrations WHERE component = ?", (COMPONENT,))
    assert sorted(r[0] for r in rows) == [m.version for m in MIGRATIONS]


def test_a_later_migration_is_applied_to_a_database_at_an_earlier_version(connect: Connect) -> None:
    first = [Migration(1, "a", statements(["CREATE TABLE a (x INTEGER)"], ["CREATE TABLE a (x INTEGER)"]))]
    assert migrate(connect(), "test", first) == [1]
    second = [
        *first,
        Migration(2, "b", statements(["ALTER TABLE a ADD COLUMN y TEXT"], ["ALTER TABLE a ADD y TEXT"])),
    ]
    database = connect()
    assert migrate(database, "test", second) == [2]
    database.execute("INSERT INTO a (x, y) VALUES (?, ?)", (1, "y"))


def test_a_database_newer_than_the_gateway_is_refused(connect: Connect) -> None:
    migrate_tenancy(connect())
    with pytest.raises(SchemaTooNew, match="upgrade the gateway"):
        migrate(connect(), COMPONENT, MIGRATIONS[:-1])


def test_a_failed_migration_leaves_neither_its_tables_nor_its_version(connect: Connect) -> None:
    broken = [
        Migration(1, "a", statements(["CREATE TABLE a (x INTEGER)"], ["CREATE TABLE a (x INTEGER)"])),
        Migration(
            2,
            "b then a again",
            statements(
                ["CREATE TABLE b (x INTEGER)", "CREATE TABLE a (x INTEGER)"],
                ["CREATE TABLE b (x INTEGER)", "CREATE TABLE a (x INTEGER)"],
            ),
        ),
    ]
    database = connect()
    with pytest.raises(Exception, match="already exists"):
        migrate(database, "test", broken)
    assert current_version(database, "test") == 0
    assert migrate(database, "test", broken[:1]) == [1]  # table a was rolled back with the failure
    database.execute("CREATE TABLE b (x INTEGER)")  # and so was table b


def test_a_database_from_before_versioned_migrations_keeps_its_keys(tmp_path: Path) -> None:
    """A SQLite file from an older release: tables without the later columns, and no version table."""
    path = tmp_path / "maas.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE tenants (name TEXT PRIMARY KEY, created_at REAL NOT NULL)")
    old.execute(
        "CREATE TABLE api_keys (id TEXT PRIMARY KEY, tenant TEXT NOT NULL REFERENCES tenants(name),"
        " key_hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL, revoked_at REAL)"
    )
    old.execute("INSERT INTO tenants VALUES ('acme', 0)")
    old.execute("INSERT INTO api_keys VALUES ('key_old', 'acme', ?, 0, NULL)", (hash_key("sk-maas-old"),))
    old.commit()
    old.close()
    store = KeyStore(path)
    principal = store.authenticate("sk-maas-old")
    assert principal is not None and (principal.tenant, principal.key_id, principal.admin) == (
        "acme",
        "key_old",
        False,
    )
    assert current_version(store.database, COMPONENT) == MIGRATIONS[-1].version
    store.close()
