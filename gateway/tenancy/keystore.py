"""Tenants and API keys, in SQLite or PostgreSQL (``database``); keys are kept only as hashes.

Keys are 256-bit random secrets, so a SHA-256 digest is a safe verifier and lookups by digest never compare
secrets byte by byte. The plain key is shown once, at creation, and never stored or logged.

A tenant may carry rate limits (requests and tokens per minute) and a budget (tokens or money per day or
month); a key may carry its own rate limits, an expiry and a list of models it may call.

Several gateways on one PostgreSQL database: each caches a key's lookup for ``cache_seconds`` (5 s by
default), so a key revoked or a limit changed through any gateway holds on every other one within that time,
and at once on the gateway that made the change. A gateway that listens (``key_events``: LISTEN/NOTIFY)
drops its cache as soon as another announces a change, in about a database round trip.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.tenancy.database import Database, PostgresDatabase, SqliteDatabase
from gateway.tenancy.key_events import CHANNEL, KeyChangeListener
from gateway.tenancy.schema import migrate_tenancy

KEY_PREFIX = "sk-maas-"

Period = Literal["day", "month"]


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
    pools: frozenset[str] | None = None
    """Capacity pools this caller may be served from (its tenant's and its key's lists together); None:
    any pool."""


@dataclass(frozen=True)
class CreatedKey:
    key_id: str
    tenant: str
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


POOL_NAME = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
"""A pool name: the catalog's rule (``gateway.catalog.pools.POOL_NAME``; tenancy sits below the catalog)."""


def _pool_list(pools: tuple[str, ...] | None) -> str | None:
    """A pool list as stored (None: any pool); each name must be a pool name."""
    if pools is None:
        return None
    for pool in pools:
        if not re.match(POOL_NAME, pool):
            raise ValueError(f"{pool!r} is not a pool name (lower case letters, digits and dashes)")
    return ",".join(sorted(set(pools)))


def _allowed_pools(tenant: str | None, key: str | None) -> frozenset[str] | None:
    lists = [
        frozenset(text.split(",")) if text else frozenset() for text in (tenant, key) if text is not None
    ]
    if not lists:
        return None
    return frozenset.intersection(*lists)


def _check_name(tenant: str) -> None:
    if not tenant or len(tenant) > 128:
        raise ValueError("tenant name must be 1 to 128 characters")


DEFAULT_CACHE_SECONDS = 5.0
"""How long a key's lookup is cached: the most a change made through another gateway takes to hold here."""


class KeyStore:
    """Tenants and API keys in the gateway's database: a SQLite file (a path; WAL mode) or a ``Database``
    (``open_database``: PostgreSQL when ``MAAS_DATABASE_URL`` is set). Its schema is migrated on opening."""

    def __init__(
        self, database: Path | Database, cache_seconds: float = DEFAULT_CACHE_SECONDS, listen: bool = False
    ) -> None:
        """``listen`` (PostgreSQL): drop cached lookups as soon as any gateway changes keys or limits
        (``key_events``), not only after ``cache_seconds``."""
        self.database = SqliteDatabase(database) if isinstance(database, Path) else database
        migrate_tenancy(self.database)
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._cache_seconds = cache_seconds
        self._lookups: dict[str, asyncio.Future[Principal | None]] = {}  # digest -> the lookup in flight
        self._notify = isinstance(self.database, PostgresDatabase)
        self._listener = None
        if listen and isinstance(self.database, PostgresDatabase):
            self._listener = KeyChangeListener(self.database.url, self._cache.clear)

    @property
    def path(self) -> Path | None:
        """The SQLite file; None on PostgreSQL."""
        return self.database.path

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self.database.close()

    def _changed(self) -> None:
        """A change to keys or limits applies to this gateway's next request, and to other gateways' as
        soon as they hear of it (PostgreSQL: a notification, sent after the change committed)."""
        self._cache.clear()
        if self._notify:
            self.database.execute("SELECT pg_notify(?, '')", (CHANNEL,))

    def _write(self, sql: str, params: tuple[object, ...]) -> int:
        changed = self.database.rowcount(sql, params)
        self._changed()
        return changed

    def set_tenant(
        self,
        name: str,
        *,
        limits: RateLimits = RateLimits(),
        budget: Budget | None = None,
        pools: tuple[str, ...] | None = None,
    ) -> None:
        """Create a tenant or replace its limits, budget and pools (None: any pool)."""
        _check_name(name)
        self._write(
            "INSERT INTO tenants(name, created_at, rpm, tpm, budget_tokens, budget_nanos, budget_period,"
            " pools) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET rpm = excluded.rpm,"
            " tpm = excluded.tpm, budget_tokens = excluded.budget_tokens,"
            " budget_nanos = excluded.budget_nanos, budget_period = excluded.budget_period,"
            " pools = excluded.pools",
            (
                name,
                time.time(),
                limits.rpm,
                limits.tpm,
                budget.tokens if budget else None,
                budget.nanos if budget else None,
                budget.period if budget else "month",
                _pool_list(pools),
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
        pools: tuple[str, ...] | None = None,
    ) -> CreatedKey:
        """A new key for ``tenant`` (created if new); an admin key opens the operator routes; ``pools``
        narrows the pools its tenant may be served from."""
        _check_name(tenant)
        pool_list = _pool_list(pools)
        if models is not None and any(not m or "," in m for m in models):
            raise ValueError("model names in a key's list must be non-empty and contain no commas")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(8)
        now = time.time()
        with self.database.transaction():
            self.database.execute(
                "INSERT INTO tenants(name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING", (tenant, now)
            )
            self.database.execute(
                "INSERT INTO api_keys(id, tenant, key_hash, role, created_at, expires_at, models,"
                " rpm, tpm, pools) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    pool_list,
                ),
            )
        return CreatedKey(key_id=key_id, tenant=tenant, secret=secret)

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key by id; False if no such active key."""
        changed = self._write(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id)
        )
        return changed > 0

    def cached(self, secret: str) -> tuple[bool, Principal | None]:
        """(True, what ``authenticate`` would answer) while that answer is cached, else (False, None):
        lets a caller on an event loop skip the thread hop that a database lookup needs."""
        cached = self._cache.get(hash_key(secret))
        if cached is not None and cached[0] > time.monotonic():
            return True, cached[1]
        return False, None

    async def authenticate_async(self, secret: str) -> Principal | None:
        """``authenticate`` for a caller on an event loop: a cached answer at once; otherwise one database
        lookup in a thread, which every concurrent caller with the same key awaits. (Without it, a key's
        cached answer expiring under a few hundred requests in flight sent each of them to the thread
        pool at once, and they queued there for most of a second.)"""
        hit, principal = self.cached(secret)
        if hit:
            return principal
        digest = hash_key(secret)
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = asyncio.ensure_future(asyncio.to_thread(self.authenticate, secret))
            self._lookups[digest] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(digest, None))
        return await asyncio.shield(lookup)

    def authenticate(self, secret: str) -> Principal | None:
        """The principal for a valid, unrevoked, unexpired key, else None. Results are cached briefly."""
        digest = hash_key(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        rows = self.database.execute(
            "SELECT k.tenant, k.id, k.role, k.expires_at, k.models, k.rpm, k.tpm,"
            " t.rpm, t.tpm, t.budget_tokens, t.budget_nanos, t.budget_period, t.pools, k.pools"
            " FROM api_keys k JOIN tenants t ON t.name = k.tenant"
            " WHERE k.key_hash = ? AND k.revoked_at IS NULL",
            (digest,),
        )
        row = rows[0] if rows else None
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
                pools=_allowed_pools(row[12], row[13]),
            )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self._cache_seconds, principal)
        return principal
