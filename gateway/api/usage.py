"""Usage queries: ``GET /v1/usage`` (the calling tenant only) and ``GET /admin/usage`` (operators)."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.api.deps import Admin, Authenticated, get_ledger
from gateway.billing.ledger import UsageQuery
from gateway.billing.ledger.records import ROW_COLUMNS, TIME_GROUPS
from gateway.errors import InvalidRequest

router = APIRouter()

TENANT_GROUPS = ("model", "key", "endpoint", *TIME_GROUPS)  # callers never see chips or pools
ADMIN_GROUPS = ("model", "tenant", "key", "chip", "pool", "deployment", "endpoint", *TIME_GROUPS)


def parse_time(value: str | None, name: str) -> float | None:
    """Unix seconds or an ISO 8601 date/time."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise InvalidRequest(f"'{name}' must be unix seconds or an ISO 8601 time.", param=name) from None


def _groups(value: str | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(n.strip() for n in (value or "model").split(",") if n.strip())
    bad = [n for n in names if n not in allowed]
    if bad or not names or len(set(names)) != len(names):
        raise InvalidRequest(
            f"'group_by' takes a comma-separated subset of: {', '.join(allowed)}.", param="group_by"
        )
    return names


async def _answer(request: Request, query: UsageQuery, fmt: str | None) -> Response:
    rows = await get_ledger(request).query(query)
    bodies = [r.as_dict() for r in rows]
    if fmt == "csv":
        out = io.StringIO()
        columns = [*query.group_by, *ROW_COLUMNS]
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(bodies)
        return Response(out.getvalue(), media_type="text/csv")
    if fmt not in (None, "", "json"):
        raise InvalidRequest("'format' must be json or csv.", param="format")
    return JSONResponse({"object": "list", "group_by": list(query.group_by), "data": bodies})


@router.get("/v1/usage")
async def tenant_usage(
    request: Request,
    principal: Authenticated,
    start: str | None = None,
    end: str | None = None,
    group_by: str | None = None,
    format: str | None = None,
) -> Response:
    query = UsageQuery(
        since=parse_time(start, "start"),
        until=parse_time(end, "end"),
        group_by=_groups(group_by, TENANT_GROUPS),
        tenant=principal.tenant,
    )
    return await _answer(request, query, format)


@router.get("/admin/usage")
async def admin_usage(
    request: Request,
    _: Admin,
    start: str | None = None,
    end: str | None = None,
    group_by: str | None = None,
    tenant: str | None = None,
    format: str | None = None,
) -> Response:
    query = UsageQuery(
        since=parse_time(start, "start"),
        until=parse_time(end, "end"),
        group_by=_groups(group_by, ADMIN_GROUPS),
        tenant=tenant,
    )
    return await _answer(request, query, format)
