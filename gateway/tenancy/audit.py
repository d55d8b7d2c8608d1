"""The audit log of operator actions: who did what, when (tenants and limits saved, keys created and revoked,
catalogs applied), beside the tenants and keys in the gateway's SQLite database. Never holds a secret."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    actor_key_id TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
)"""
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
    """Append-only operator actions, in the database at ``path`` (WAL mode, shared with the key store)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.execute(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    def record(
        self,
        actor: str,
        actor_key_id: str | None,
        action: str,
        target: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO audit_log (at, actor, actor_key_id, action, target, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), actor, actor_key_id, action, target, json.dumps(detail or {}, sort_keys=True)),
            )

    def entries(self, since: float | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest entries first, at most ``limit`` (capped at ``MAX_ENTRIES``)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, at, actor, actor_key_id, action, target, detail FROM audit_log"
                " WHERE at >= ? ORDER BY id DESC LIMIT ?",
                (since if since is not None else 0.0, max(1, min(limit, MAX_ENTRIES))),
            ).fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]
