"""The tenancy schema (tenants, API keys, the audit log) as versioned migrations; see ``migrations``.

Append a migration to change the schema; never edit one that has shipped.
"""

from __future__ import annotations

from gateway.tenancy.database import Database
from gateway.tenancy.migrations import Migration, migrate, statements

COMPONENT = "tenancy"

_KEY_TABLES = {
    "tenants": {
        "name": "TEXT PRIMARY KEY",
        "created_at": "{real} NOT NULL",
        "rpm": "INTEGER",
        "tpm": "INTEGER",
        "budget_tokens": "BIGINT",
        "budget_nanos": "BIGINT",
        "budget_period": "TEXT NOT NULL DEFAULT 'month'",
    },
    "api_keys": {
        "id": "TEXT PRIMARY KEY",
        "tenant": "TEXT NOT NULL REFERENCES tenants(name)",
        "key_hash": "TEXT NOT NULL UNIQUE",
        "role": "TEXT NOT NULL DEFAULT 'tenant'",
        "created_at": "{real} NOT NULL",
        "revoked_at": "{real}",
        "expires_at": "{real}",
        "models": "TEXT",
        "rpm": "INTEGER",
        "tpm": "INTEGER",
    },
}


def _key_tables(database: Database) -> None:
    """Tenants and keys. A SQLite database from before versioned migrations already has the tables,
    perhaps without the columns added since: they are added here, once."""
    real = "REAL" if database.dialect == "sqlite" else "DOUBLE PRECISION"
    for table, columns in _KEY_TABLES.items():
        body = ", ".join(f"{name} {kind.format(real=real)}" for name, kind in columns.items())
        database.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
        if database.dialect != "sqlite":
            continue
        present = {row[1] for row in database.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in present:
                kind = kind.format(real=real).replace(" PRIMARY KEY", "").replace(" UNIQUE", "")
                database.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


_AUDIT = """CREATE TABLE IF NOT EXISTS audit_log (
    id {id},
    at {real} NOT NULL,
    actor TEXT NOT NULL,
    actor_key_id TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
)"""

MIGRATIONS = (
    Migration(1, "tenants and api keys", _key_tables),
    Migration(
        2,
        "audit log",
        statements(
            sqlite=[_AUDIT.format(id="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL")],
            postgres=[
                _AUDIT.format(id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", real="DOUBLE PRECISION"),
                "CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at)",
            ],
        ),
    ),
    Migration(
        3,
        "keys by tenant",
        statements(
            sqlite=["CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant)"],
            postgres=["CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant)"],
        ),
    ),
    Migration(
        4,
        "pools a tenant or key may be served from",
        statements(
            sqlite=[
                "ALTER TABLE tenants ADD COLUMN pools TEXT",
                "ALTER TABLE api_keys ADD COLUMN pools TEXT",
            ],
            postgres=[
                "ALTER TABLE tenants ADD COLUMN IF NOT EXISTS pools TEXT",
                "ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS pools TEXT",
            ],
        ),
    ),
)


def migrate_tenancy(database: Database) -> list[int]:
    """Bring the tenancy tables up to date; the versions applied now."""
    return migrate(database, COMPONENT, MIGRATIONS)
