"""Versioned schema migrations, applied at start, safe to run from several gateways at once.

Each part of the schema (a *component*, e.g. ``tenancy``) has an ordered list of migrations; the versions
applied are rows of ``schema_migrations``. A migrator takes a lock first (PostgreSQL: a transaction-level
advisory lock on the schema; SQLite: ``BEGIN IMMEDIATE``, the file's writer lock), reads what is applied,
applies the rest and records them, all in one transaction: a second gateway starting at the same moment
waits, then finds nothing left to do. DDL is transactional in both databases, so a failed migration leaves
no half-built schema behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.tenancy.database import Database

logger = logging.getLogger(__name__)

_TABLE = {
    "sqlite": "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL,"
    " version INTEGER NOT NULL, name TEXT NOT NULL, applied_at REAL NOT NULL,"
    " PRIMARY KEY (component, version))",
    "postgres": "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL,"
    " version INTEGER NOT NULL, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL,"
    " PRIMARY KEY (component, version))",
}


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer release than this gateway."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Database], None]
    """Runs inside the migration's transaction; ``database.dialect`` says which SQL to write."""


def statements(sqlite: Sequence[str], postgres: Sequence[str]) -> Callable[[Database], None]:
    """A migration made of fixed statements, one list per dialect."""

    def apply(database: Database) -> None:
        for sql in sqlite if database.dialect == "sqlite" else postgres:
            database.execute(sql)

    return apply


def migrate(database: Database, component: str, migrations: Sequence[Migration]) -> list[int]:
    """Apply the migrations of ``component`` that the database lacks; the versions applied now."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError(f"{component}: migration versions must be unique and ascending")
    applied_now: list[int] = []
    with database.transaction():
        _lock_and_create(database)
        rows = database.execute("SELECT version FROM schema_migrations WHERE component = ?", (component,))
        applied = {int(row[0]) for row in rows}
        if applied and max(applied) > (versions[-1] if versions else 0):
            raise SchemaTooNew(
                f"the database's {component} schema is at version {max(applied)}, newer than this gateway "
                f"knows ({versions[-1] if versions else 0}): upgrade the gateway"
            )
        for migration in migrations:
            if migration.version in applied:
                continue
            migration.apply(database)
            database.execute(
                "INSERT INTO schema_migrations (component, version, name, applied_at) VALUES (?, ?, ?, ?)",
                (component, migration.version, migration.name, time.time()),
            )
            applied_now.append(migration.version)
    for version in applied_now:
        logger.info("schema migrated component=%s version=%d", component, version)
    return applied_now


def _lock_and_create(database: Database) -> None:
    """Inside a transaction: wait for any other migrator, then make sure the version table exists."""
    if database.dialect == "postgres":
        # Held to the end of the transaction; per schema, so separate installations do not wait.
        database.execute("SELECT pg_advisory_xact_lock(hashtext('maas-migrations:' || current_schema()))")
    database.execute(_TABLE[database.dialect])


def current_version(database: Database, component: str) -> int:
    """The highest version of ``component`` applied (0: none)."""
    with database.transaction():
        _lock_and_create(database)
        rows = database.execute(
            "SELECT MAX(version) FROM schema_migrations WHERE component = ?", (component,)
        )
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0
