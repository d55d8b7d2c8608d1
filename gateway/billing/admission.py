"""Admission: rate limits (requests and tokens per minute, per key and per tenant) and tenant budgets.

Every admitted request first *reserves* what it may use: one request, and its token estimate (prompt
estimate plus the most it may generate) in the current one-minute window of each limited scope and in
the tenant's budget period. The check and the reservation are one transaction in the shared database (or
one Lua script in Redis: ``redis_counters``), so concurrent requests on any number of gateway replicas
cannot all slip past a limit together. Settlement
replaces the estimate with what was really used; because the estimate covers the completion's maximum,
a limit can only be exceeded by the prompt estimate's error of the requests in flight, and a budget by at
most one request's worth.

Windows are fixed one-minute windows (a burst may straddle two of them).
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from gateway.billing.ledger.records import charge_nanos
from gateway.catalog.routing import RoutedModel
from gateway.errors import CountersUnavailable, QuotaExceeded, RateLimited, ServiceError
from gateway.tenancy.database import Database, PostgresDatabase, SqliteDatabase, connect_sqlite
from gateway.tenancy.keystore import Budget, Principal, RateLimits
from gateway.tenancy.migrations import Migration, migrate, statements

logger = logging.getLogger(__name__)

WINDOW_S = 60

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS rate_windows (
        scope TEXT NOT NULL, window_start BIGINT NOT NULL,
        requests BIGINT NOT NULL, tokens BIGINT NOT NULL,
        PRIMARY KEY (scope, window_start))""",
    """CREATE TABLE IF NOT EXISTS budget_usage (
        tenant TEXT NOT NULL, period_start BIGINT NOT NULL,
        tokens BIGINT NOT NULL, nanos BIGINT NOT NULL,
        PRIMARY KEY (tenant, period_start))""",
]
MIGRATIONS = (Migration(1, "rate windows and budget usage", statements(SCHEMA, SCHEMA)),)
"""The counters' schema, versioned (``gateway.tenancy.migrations``): append a migration to change it."""


@dataclass(frozen=True)
class Estimate:
    tokens: int
    nanos: int


@dataclass(frozen=True)
class Reservation:
    """What one admitted request holds until it settles."""

    windows: tuple[tuple[str, int], ...] = ()
    budget: tuple[str, int] | None = None
    estimate: Estimate = Estimate(0, 0)
    headers: dict[str, str] = field(default_factory=dict)


def period_bounds(period: str, now: float) -> tuple[int, int]:
    """Start and end (unix seconds, UTC) of the budget period that holds ``now``."""
    day = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return int(start.timestamp()), int(start.timestamp()) + 86_400
    start = datetime(day.year, day.month, 1, tzinfo=UTC)
    days = calendar.monthrange(day.year, day.month)[1]
    return int(start.timestamp()), int(start.timestamp()) + days * 86_400


class Counters(Protocol):
    """Where the window and budget counters live: the database (``CounterStore``) or Redis
    (``redis_counters.RedisCounterStore``). ``admit`` checks every limit and reserves the estimate in one
    atomic step, or raises ``RateLimited`` / ``QuotaExceeded`` and reserves nothing."""

    def admit(
        self,
        scopes: list[tuple[str, RateLimits]],
        budget: tuple[str, Budget] | None,
        estimate: Estimate,
        now: float,
        tenant: str | None = None,
    ) -> Reservation: ...

    def settle(self, reservation: Reservation, tokens: int, nanos: int) -> None: ...

    def close(self) -> None: ...


class CounterStore:
    """Window and budget counters in SQLite or PostgreSQL, changed only inside one transaction."""

    def __init__(
        self,
        conn: Any,
        placeholder: str,
        begin: str,
        lock_rows: bool,
        reconnect: Callable[[], Any] | None = None,
    ) -> None:
        self._conn = conn
        self._reconnect = reconnect  # PostgreSQL: a new connection after the server went away
        self._p = placeholder
        self._begin = begin
        self._lock_rows = lock_rows  # PostgreSQL: SELECT ... FOR UPDATE
        self._mutex = threading.Lock()

    @staticmethod
    def _migrate(database: Database) -> None:
        """The tables, under the migrations' lock: several gateways may start at once."""
        try:
            migrate(database, "counters", MIGRATIONS)
        finally:
            database.close()

    @classmethod
    def sqlite(cls, path: str) -> CounterStore:

        cls._migrate(SqliteDatabase(Path(path)))

        conn = connect_sqlite(path)
        conn.execute("PRAGMA synchronous=OFF")  # counters, not bills: a crash may only forget a minute
        return cls(conn, "?", "BEGIN IMMEDIATE", lock_rows=False)

    @classmethod
    def postgres(cls, url: str) -> CounterStore:
        import psycopg

        cls._migrate(PostgresDatabase(url))

        def connect() -> Any:
            return psycopg.connect(url, autocommit=True, connect_timeout=5)

        return cls(connect(), "%s", "BEGIN", lock_rows=True, reconnect=connect)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._mutex:
            if self._reconnect is not None and (self._conn.closed or self._conn.broken):
                self._conn = self._reconnect()
            self._conn.execute(self._begin)
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _row(self, table: str, keys: tuple[str, str], values: tuple[object, object], cols: str) -> Any:
        p = self._p
        zeros = ", ".join("0" for _ in cols.split(","))
        self._conn.execute(
            f"INSERT INTO {table} ({keys[0]}, {keys[1]}, {cols}) VALUES ({p}, {p}, {zeros})"
            " ON CONFLICT DO NOTHING",
            values,
        )
        lock = " FOR UPDATE" if self._lock_rows else ""
        return self._conn.execute(
            f"SELECT {cols} FROM {table} WHERE {keys[0]} = {p} AND {keys[1]} = {p}{lock}", values
        ).fetchone()

    def admit(
        self,
        scopes: list[tuple[str, RateLimits]],
        budget: tuple[str, Budget] | None,
        estimate: Estimate,
        now: float,
        tenant: str | None = None,
    ) -> Reservation:
        window = int(now // WINDOW_S * WINDOW_S)
        reset_s = window + WINDOW_S - now
        headers: dict[str, str] = {}
        with self._transaction():
            for scope, limits in sorted(scopes, key=lambda s: s[0]):  # fixed order: no deadlocks
                requests, tokens = self._row(
                    "rate_windows", ("scope", "window_start"), (scope, window), "requests, tokens"
                )
                if limits.rpm is not None and requests + 1 > limits.rpm:
                    raise RateLimited.requests(scope, limits.rpm, reset_s)
                if limits.tpm is not None and tokens + estimate.tokens > limits.tpm:
                    raise RateLimited.tokens(scope, limits.tpm, max(0, limits.tpm - tokens), reset_s)
                if limits.rpm is not None:
                    headers.setdefault("x-ratelimit-limit-requests", str(limits.rpm))
                    headers.setdefault("x-ratelimit-remaining-requests", str(limits.rpm - requests - 1))
                if limits.tpm is not None:
                    headers.setdefault("x-ratelimit-limit-tokens", str(limits.tpm))
                    headers.setdefault(
                        "x-ratelimit-remaining-tokens", str(limits.tpm - tokens - estimate.tokens)
                    )
            period_start = None
            if budget is not None:
                tenant, allowance = budget
                period_start, period_end = period_bounds(allowance.period, now)
                used_tokens, used_nanos = self._row(
                    "budget_usage", ("tenant", "period_start"), (tenant, period_start), "tokens, nanos"
                )
                over_tokens = (
                    allowance.tokens is not None and used_tokens + estimate.tokens > allowance.tokens
                )
                over_money = allowance.nanos is not None and used_nanos + estimate.nanos > allowance.nanos
                if over_tokens or over_money:
                    raise QuotaExceeded.for_period(allowance.period, period_end - now)
            p = self._p
            for scope, _ in scopes:
                self._conn.execute(
                    f"UPDATE rate_windows SET requests = requests + 1, tokens = tokens + {p}"
                    f" WHERE scope = {p} AND window_start = {p}",
                    (estimate.tokens, scope, window),
                )
            if budget is not None:
                self._conn.execute(
                    f"UPDATE budget_usage SET tokens = tokens + {p}, nanos = nanos + {p}"
                    f" WHERE tenant = {p} AND period_start = {p}",
                    (estimate.tokens, estimate.nanos, budget[0], period_start),
                )
        return Reservation(
            windows=tuple((scope, window) for scope, _ in scopes),
            budget=(budget[0], period_start) if budget is not None and period_start is not None else None,
            estimate=estimate,
            headers=headers,
        )

    def settle(self, reservation: Reservation, tokens: int, nanos: int) -> None:
        """Replace the reservation's estimate with what was used."""
        p = self._p
        delta_tokens = tokens - reservation.estimate.tokens
        delta_nanos = nanos - reservation.estimate.nanos
        with self._transaction():
            for scope, window in reservation.windows:
                self._conn.execute(
                    f"UPDATE rate_windows SET tokens = tokens + {p} WHERE scope = {p} AND window_start = {p}",
                    (delta_tokens, scope, window),
                )
            if reservation.budget is not None:
                tenant, period_start = reservation.budget
                self._conn.execute(
                    f"UPDATE budget_usage SET tokens = tokens + {p}, nanos = nanos + {p}"
                    f" WHERE tenant = {p} AND period_start = {p}",
                    (delta_tokens, delta_nanos, tenant, period_start),
                )

    def close(self) -> None:
        self._conn.close()


class Admission:
    """Admits or refuses requests for the principals' limits and budgets."""

    def __init__(self, store: Counters, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    @staticmethod
    def estimate(model: RoutedModel, prompt_tokens: int, max_tokens: int | None, n: int) -> Estimate:
        """The most a request may use: its prompt, and ``n`` completions of at most ``max_tokens``
        (or the rest of the context)."""
        completion = max_tokens if max_tokens is not None else max(0, model.context_length - prompt_tokens)
        completion *= n
        nanos = charge_nanos(
            prompt_tokens,
            completion,
            Decimal(model.pricing.input_per_million),
            Decimal(model.pricing.output_per_million),
        )
        return Estimate(tokens=prompt_tokens + completion, nanos=nanos)

    @staticmethod
    def needed(principal: Principal) -> bool:
        """Whether this caller has any limit or budget to enforce."""
        limited = principal.key_limits.any or principal.tenant_limits.any
        return limited or principal.budget is not None

    async def admit(self, principal: Principal, estimate: Estimate) -> Reservation | None:
        scopes = []
        if principal.key_limits.any:
            scopes.append((f"key:{principal.key_id}", principal.key_limits))
        if principal.tenant_limits.any:
            scopes.append((f"tenant:{principal.tenant}", principal.tenant_limits))
        budget = (principal.tenant, principal.budget) if principal.budget is not None else None
        if not scopes and budget is None:
            return None  # nothing to enforce: no database round trip
        try:
            return await asyncio.to_thread(
                self.store.admit, scopes, budget, estimate, self._clock(), principal.tenant
            )
        except ServiceError:
            raise
        except Exception as exc:  # the database or Redis is unreachable (a restart, a failover)
            logger.warning("admission counters unreachable error=%s", type(exc).__name__)
            raise CountersUnavailable("Rate limits cannot be checked right now; retry shortly.") from exc

    async def settle(self, reservation: Reservation | None, tokens: int, nanos: int) -> None:
        if reservation is not None:
            await asyncio.to_thread(self._settle, reservation, tokens, nanos)

    def settle_soon(self, reservation: Reservation | None, tokens: int, nanos: int) -> None:
        """Settle without waiting (the request's task is being cancelled)."""
        if reservation is not None:
            threading.Thread(target=self._settle, args=(reservation, tokens, nanos), daemon=True).start()

    def _settle(self, reservation: Reservation, tokens: int, nanos: int) -> None:
        """A settlement that cannot reach the counters leaves the estimate reserved, which errs only towards
        refusing (the window passes, the budget keeps at most the estimate's excess); the answer, already
        billed in the ledger, still goes out."""
        try:
            self.store.settle(reservation, tokens, nanos)
        except Exception as exc:
            logger.warning("admission settlement lost error=%s", type(exc).__name__)
