"""The ledger's schema as versioned migrations (``gateway.tenancy.migrations``), applied when a store opens.

Version 1 is the ledger as it stood when migrations began; it also brings a ledger from before then up to
it (the tables exist: only the columns added since are added). A change from now on is a new migration.
"""

from __future__ import annotations

from gateway.billing.ledger.sql import ADDED_COLUMNS, add_column_sql, create_table
from gateway.tenancy.database import Database
from gateway.tenancy.migrations import Migration, migrate

COMPONENT = "ledger"


def _usage_records(database: Database) -> None:
    sqlite = database.dialect == "sqlite"
    for statement in create_table(
        "REAL" if sqlite else "DOUBLE PRECISION", "INTEGER" if sqlite else "BIGINT"
    ):
        database.execute(statement)
    if not sqlite:
        for column in ADDED_COLUMNS:
            database.execute(add_column_sql(column, if_not_exists=True))
        return
    present = {row[1] for row in database.execute("PRAGMA table_info(usage_records)")}
    for column in ADDED_COLUMNS:  # SQLite has no ADD COLUMN IF NOT EXISTS
        if column not in present:
            database.execute(add_column_sql(column))


def _attempts(database: Database) -> None:
    """How many deployments a request was sent to (the fallback before the first byte): 1 before."""
    column = "attempts INTEGER NOT NULL DEFAULT 1"
    if database.dialect != "sqlite":
        database.execute(f"ALTER TABLE usage_records ADD COLUMN IF NOT EXISTS {column}")
        return
    present = {row[1] for row in database.execute("PRAGMA table_info(usage_records)")}
    if "attempts" not in present:
        database.execute(f"ALTER TABLE usage_records ADD COLUMN {column}")


MIGRATIONS = (
    Migration(1, "usage records", _usage_records),
    Migration(2, "attempts per request", _attempts),
)


def migrate_ledger(database: Database) -> list[int]:
    """Bring the ledger's tables up to date on ``database`` (then closed); the versions applied now."""
    try:
        return migrate(database, COMPONENT, MIGRATIONS)
    finally:
        database.close()
