"""GET /admin/audit: the operator actions the gateway recorded, newest first (operators only)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Query, Request

from gateway.api.deps import Admin, get_audit
from gateway.tenancy.audit import MAX_ENTRIES

router = APIRouter()


@router.get("/admin/audit")
async def audit_log(
    request: Request,
    _: Admin,
    since: float | None = Query(default=None, ge=0, description="Unix seconds; entries at or after it."),
    limit: int = Query(default=100, ge=1, le=MAX_ENTRIES),
) -> dict[str, Any]:
    entries = get_audit(request).entries(since=since, limit=limit)
    return {"object": "list", "data": [{"object": "audit.entry", **dataclasses.asdict(e)} for e in entries]}
