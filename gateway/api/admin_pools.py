"""GET /admin/pools: per pool and deployment, load now (capacity, in flight, utilisation, vacancy) and, over
a window, tokens, revenue, cost (marginal and amortised) and margin; spill and drain-back events."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from gateway.api.deps import Admin, get_catalog_controller, get_ledger, get_placement, get_utilization
from gateway.api.usage import parse_time
from gateway.billing.ledger import UsageQuery
from gateway.observability.pools_report import pools_report

router = APIRouter()


@router.get("/admin/pools")
async def pools(request: Request, _: Admin, start: str | None = None) -> dict[str, Any]:
    """``start``: the window's start (unix seconds or ISO 8601); default: when this gateway started."""
    controller = get_catalog_controller(request)
    now = time.time()
    since = parse_time(start, "start") or request.app.state.started_at
    usage = await get_ledger(request).query(UsageQuery(since=since, group_by=("deployment",)))
    utilization = get_utilization(request)
    in_flight = (
        {}
        if utilization is None
        else {d.name: utilization.in_flight(d.name) for d in utilization.deployments()}
    )
    return pools_report(
        controller.catalog,
        usage,
        in_flight,
        controller.runtime.health.healthy_replicas(),
        now - since,
        get_placement(request).events,
    )
