"""SQL shared by the SQLite and PostgreSQL stores (both accept this dialect)."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

from gateway.billing.ledger.records import GROUP_COLUMNS, UsageQuery, UsageRecord, UsageRow

COLUMNS = (
    "request_id",
    "idempotency_key",
    "tenant",
    "key_id",
    "model",
    "deployment",
    "chip",
    "pool",
    "endpoint",
    "stream",
    "status",
    "error_type",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "ttft_s",
    "duration_s",
    "currency",
    "price_input_per_million",
    "price_output_per_million",
    "charge_nanos",
    "created_at",
    "usage_estimated",
    "attempts",
)

ADDED_COLUMNS = {"usage_estimated": "BOOLEAN NOT NULL DEFAULT FALSE"}
"""Columns added after the first release: a ledger created before them gets them when it is opened."""


def create_table(real: str, bigint: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS usage_records (
            request_id TEXT PRIMARY KEY,
            idempotency_key TEXT,
            tenant TEXT NOT NULL,
            key_id TEXT NOT NULL,
            model TEXT NOT NULL,
            deployment TEXT NOT NULL,
            chip TEXT NOT NULL,
            pool TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            stream BOOLEAN NOT NULL,
            status TEXT NOT NULL,
            error_type TEXT,
            finish_reason TEXT,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cached_tokens INTEGER NOT NULL,
            ttft_s {real},
            duration_s {real} NOT NULL,
            currency TEXT NOT NULL,
            price_input_per_million TEXT NOT NULL,
            price_output_per_million TEXT NOT NULL,
            charge_nanos {bigint} NOT NULL,
            created_at {real} NOT NULL,
            usage_estimated BOOLEAN NOT NULL DEFAULT FALSE
        )""",
        """CREATE UNIQUE INDEX IF NOT EXISTS usage_records_idempotency
            ON usage_records (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL""",
        "CREATE INDEX IF NOT EXISTS usage_records_created ON usage_records (created_at)",
        "CREATE INDEX IF NOT EXISTS usage_records_tenant ON usage_records (tenant, created_at)",
    ]


def add_column_sql(name: str, if_not_exists: bool = False) -> str:
    """The statement that adds one of ``ADDED_COLUMNS`` to an existing ledger (PostgreSQL can skip it
    when present; SQLite cannot)."""
    guard = " IF NOT EXISTS" if if_not_exists else ""
    return f"ALTER TABLE usage_records ADD COLUMN{guard} {name} {ADDED_COLUMNS[name]}"


@functools.cache
def insert_sql(placeholder: str) -> str:
    marks = ", ".join([placeholder] * len(COLUMNS))
    return f"INSERT INTO usage_records ({', '.join(COLUMNS)}) VALUES ({marks}) ON CONFLICT DO NOTHING"


_ROW = operator.attrgetter(*COLUMNS)


def row_values(record: UsageRecord) -> tuple[object, ...]:
    values: tuple[object, ...] = _ROW(record)  # one C call for every column: the writer thread's work
    return values


def record_from_row(row: Sequence[object]) -> UsageRecord:
    """A row of ``COLUMNS`` as a record (both stores keep booleans as 0/1 or true/false)."""
    values = dict(zip(COLUMNS, row, strict=True))
    values["stream"] = bool(values["stream"])
    values["usage_estimated"] = bool(values["usage_estimated"])
    return UsageRecord(**values)  # type: ignore[arg-type]


def usage_query_sql(
    query: UsageQuery, placeholder: str, time_buckets: dict[str, str]
) -> tuple[str, list[object]]:
    """A grouped usage query; group names are mapped through a fixed table, never interpolated raw."""
    expressions = []
    for name in query.group_by:
        expressions.append(time_buckets[name] if name in time_buckets else GROUP_COLUMNS[name])
    where: list[str] = []
    params: list[object] = []
    if query.tenant is not None:
        where.append(f"tenant = {placeholder}")
        params.append(query.tenant)
    if query.since is not None:
        where.append(f"created_at >= {placeholder}")
        params.append(query.since)
    if query.until is not None:
        where.append(f"created_at < {placeholder}")
        params.append(query.until)
    select_groups = "".join(f"{expr} AS g{i}, " for i, expr in enumerate(expressions))
    sql = (
        f"SELECT {select_groups}currency, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), "
        "SUM(charge_nanos) FROM usage_records"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    group_cols = [f"g{i}" for i in range(len(expressions))] + ["currency"]
    sql += " GROUP BY " + ", ".join(group_cols) + " ORDER BY " + ", ".join(group_cols)
    return sql, params


def to_usage_row(query: UsageQuery, row: Sequence[object]) -> UsageRow:
    """A result row of ``usage_query_sql`` as a ``UsageRow``."""
    n = len(query.group_by)
    group = {name: str(value) for name, value in zip(query.group_by, row[:n], strict=True)}
    currency, requests, prompt, completion, charge = row[n:]
    return UsageRow(
        group=group,
        requests=int(requests),  # type: ignore[call-overload]
        prompt_tokens=int(prompt or 0),  # type: ignore[call-overload]
        completion_tokens=int(completion or 0),  # type: ignore[call-overload]
        charge_nanos=int(charge or 0),  # type: ignore[call-overload]
        currency=str(currency),
    )
