"""Tenants and API keys, stored in SQLite; keys are kept only as hashes.

Keys are 256-bit random secrets, so a SHA-256 digest is a safe verifier and lookups by digest never compare
secrets byte by byte. The plain key is shown once, at creation, and never stored or logged.

A tenant may carry rate limits (requests and tokens per minute) and a budget (tokens or money per day or
month); a key may carry its own rate limits, an expiry and a list of models it may call.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

KEY_PREFIX = "sk-maas-"

Period = Literal["day", "month"]

_TABLES = {
    "tenants": {
        "name": "TEXT PRIMARY KEY",
        "created_at": "REAL NOT NULL",
        "rpm": "INTEGER",
        "tpm": "INTEGER",
        "budget_tokens": "INTEGER",
        "budget_nanos": "INTEGER",
        "budget_period": "TEXT NOT NULL DEFAULT 'month'",
    },
    "api_keys": {
        "id": "TEXT PRIMARY KEY",
        "tenant": "TEXT NOT NULL REFERENCES tenants(name)",
        "key_hash": "TEXT NOT NULL UNIQUE",
        "role": "TEXT NOT NULL DEFAULT 'tenant'",
        "created_at": "REAL NOT NULL",
        "revoked_at": "REAL",
        "expires_at": "REAL",
        "models": "TEXT",
        "rpm": "INTEGER",
        "tpm": "INTEGER",
    },
}


@dataclass(frozen=True)
class RateLimits:
    """Requests and tokens per minute; None means unlimited."""

    rpm: int | None = None
    tpm: int | None = None

    @property
    def any(self) -> bool:
        return self.rpm is not None or self.tpm is not None


@dataclass(frozen=True)
class Budget:
    """A tenant's allowance per period: tokens, money (in 1e-9 of the catalog currency), or both."""

    period: Period
    tokens: int | None = None
    nanos: int | None = None


@dataclass(frozen=True)
class Principal:
    """Who is calling and what they may do (never the key itself)."""

    tenant: str
    key_id: str
    admin: bool = False
    key_limits: RateLimits = RateLimits()
    tenant_limits: RateLimits = RateLimits()
    budget: Budget | None = None
    models: tuple[str, ...] | None = None  # None: every model


@dataclass(frozen=True)
class CreatedKey:
    key_id: str
    tenant: str
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _check_name(tenant: str) -> None:
    if not tenant or len(tenant) > 128:
        raise ValueError("tenant name must be 1 to 128 characters")


class KeyStore:
    """Tenants and API keys in the gateway's SQLite database (WAL mode)."""

    def __init__(self, path: Path, cache_seconds: float = 5.0) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._lock = threading.Lock()
        self._migrate()
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._cache_seconds = cache_seconds

    def _migrate(self) -> None:
        """Create the tables, and add columns that older databases lack."""
        for table, columns in _TABLES.items():
            body = ", ".join(f"{name} {kind}" for name, kind in columns.items())
            self._conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
            present = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns.items():
                if name not in present:
                    kind = kind.replace(" PRIMARY KEY", "").replace(" UNIQUE", "")
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def close(self) -> None:
        self._conn.close()

    def _write(self, sql: str, params: tuple[object, ...]) -> int:
        with self._lock:
            cursor = self._conn.execute(sql, params)
            self._cache.clear()  # a change to keys or limits applies to the next request
            return cursor.rowcount

    def set_tenant(
        self,
        name: str,
        *,
        limits: RateLimits = RateLimits(),
        budget: Budget | None = None,
    ) -> None:
        """Create a tenant or replace its limits and budget."""
        _check_name(name)
        self._write(
            "INSERT INTO tenants(name, created_at, rpm, tpm, budget_tokens, budget_nanos, budget_period)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET rpm = excluded.rpm,"
            " tpm = excluded.tpm, budget_tokens = excluded.budget_tokens,"
            " budget_nanos = excluded.budget_nanos, budget_period = excluded.budget_period",
            (
                name,
                time.time(),
                limits.rpm,
                limits.tpm,
                budget.tokens if budget else None,
                budget.nanos if budget else None,
                budget.period if budget else "month",
            ),
        )

    def create_key(
        self,
        tenant: str,
        *,
        admin: bool = False,
        limits: RateLimits = RateLimits(),
        expires_at: float | None = None,
        models: tuple[str, ...] | None = None,
    ) -> CreatedKey:
        """A new key for ``tenant`` (created if new); an admin key opens the operator routes."""
        _check_name(tenant)
        if models is not None and any(not m or "," in m for m in models):
            raise ValueError("model names in a key's list must be non-empty and contain no commas")
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
                    "INSERT INTO api_keys(id, tenant, key_hash, role, created_at, expires_at, models,"
                    " rpm, tpm) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key_id,
                        tenant,
                        hash_key(secret),
                        "admin" if admin else "tenant",
                        now,
                        expires_at,
                        ",".join(models) if models else None,
                        limits.rpm,
                        limits.tpm,
                    ),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return CreatedKey(key_id=key_id, tenant=tenant, secret=secret)

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key by id; False if no such active key."""
        changed = self._write(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id)
        )
        return changed > 0

    def authenticate(self, secret: str) -> Principal | None:
        """The principal for a valid, unrevoked, unexpired key, else None. Results are cached briefly."""
        digest = hash_key(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self._lock:
            row = self._conn.execute(
                "SELECT k.tenant, k.id, k.role, k.expires_at, k.models, k.rpm, k.tpm,"
                " t.rpm, t.tpm, t.budget_tokens, t.budget_nanos, t.budget_period"
                " FROM api_keys k JOIN tenants t ON t.name = k.tenant"
                " WHERE k.key_hash = ? AND k.revoked_at IS NULL",
                (digest,),
            ).fetchone()
        principal = None
        if row is not None and (row[3] is None or row[3] > time.time()):
            budget = None
            if row[9] is not None or row[10] is not None:
                budget = Budget(period=row[11], tokens=row[9], nanos=row[10])
            principal = Principal(
                tenant=row[0],
                key_id=row[1],
                admin=row[2] == "admin",
                models=tuple(row[4].split(",")) if row[4] else None,
                key_limits=RateLimits(rpm=row[5], tpm=row[6]),
                tenant_limits=RateLimits(rpm=row[7], tpm=row[8]),
                budget=budget,
            )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self._cache_seconds, principal)
        return principal
