"""The audit log of operator actions: who did what, when (tenants and limits saved, keys created and revoked,
catalogs applied), beside the tenants and keys in the gateway's database (SQLite, or PostgreSQL shared by
every gateway). Never holds a secret."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.tenancy.database import Database, SqliteDatabase
from gateway.tenancy.schema import migrate_tenancy

MAX_ENTRIES = 1000


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    """The operator's tenant for an admin key, ``cli:<user>`` for the local command."""
    actor_key_id: str | None
    action: str
    target: str
    detail: dict[str, Any]


class AuditLog:
    """Append-only operator actions, in the database at ``path`` (a SQLite file in WAL mode, shared with the
    key store) or in a ``Database`` (``open_database``: PostgreSQL when ``MAAS_DATABASE_URL`` is set)."""

    def __init__(self, database: Path | Database) -> None:
        self.database = SqliteDatabase(database) if isinstance(database, Path) else database
        migrate_tenancy(self.database)

    def close(self) -> None:
        self.database.close()

    def record(
        self,
        actor: str,
        actor_key_id: str | None,
        action: str,
        target: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.database.execute(
            "INSERT INTO audit_log (at, actor, actor_key_id, action, target, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), actor, actor_key_id, action, target, json.dumps(detail or {}, sort_keys=True)),
        )

    def entries(self, since: float | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest entries first, at most ``limit`` (capped at ``MAX_ENTRIES``)."""
        rows = self.database.execute(
            "SELECT id, at, actor, actor_key_id, action, target, detail FROM audit_log"
            " WHERE at >= ? ORDER BY id DESC LIMIT ?",
            (since if since is not None else 0.0, max(1, min(limit, MAX_ENTRIES))),
        )
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]
