"""API keys: created for a tenant, stored hashed in SQLite, looked up by hash.

Keys are 256-bit random secrets, so a SHA-256 digest is a safe verifier and lookups by digest never compare
secrets byte by byte. The plain key is shown once, at creation, and never stored or logged.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

KEY_PREFIX = "sk-maas-"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name),
    key_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL DEFAULT 'tenant',
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant and the key id (never the key itself)."""

    tenant: str
    key_id: str
    admin: bool = False


@dataclass(frozen=True)
class CreatedKey:
    key_id: str
    tenant: str
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class KeyStore:
    """Tenants and API keys in the gateway's SQLite database (WAL mode)."""

    def __init__(self, path: Path, cache_seconds: float = 5.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(api_keys)")}
        if "role" not in columns:  # databases made before operator keys existed
            self._conn.execute("ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'tenant'")
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._cache_seconds = cache_seconds

    def close(self) -> None:
        self._conn.close()

    def create_key(self, tenant: str, *, admin: bool = False) -> CreatedKey:
        """A new key for ``tenant``; an admin key opens the operator routes (``/admin``)."""
        if not tenant or len(tenant) > 128:
            raise ValueError("tenant name must be 1 to 128 characters")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(8)
        now = time.time()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT OR IGNORE INTO tenants(name, created_at) VALUES (?, ?)", (tenant, now)
                )
                self._conn.execute(
                    "INSERT INTO api_keys(id, tenant, key_hash, role, created_at) VALUES (?, ?, ?, ?, ?)",
                    (key_id, tenant, hash_key(secret), "admin" if admin else "tenant", now),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return CreatedKey(key_id=key_id, tenant=tenant, secret=secret)

    def authenticate(self, secret: str) -> Principal | None:
        """The principal for a valid, unrevoked key, else None. Results are cached briefly."""
        digest = hash_key(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self._lock:
            row = self._conn.execute(
                "SELECT tenant, id, role FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
                (digest,),
            ).fetchone()
        principal = Principal(tenant=row[0], key_id=row[1], admin=row[2] == "admin") if row else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self._cache_seconds, principal)
        return principal
