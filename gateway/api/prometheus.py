"""GET /metrics: Prometheus exposition of the gateway's own registry."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.api.deps import get_metrics, get_utilization

router = APIRouter()


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    utilization = get_utilization(request)
    if utilization is not None:
        utilization.tick()  # replica time and cost up to this scrape
    return Response(get_metrics(request).exposition(), media_type=CONTENT_TYPE_LATEST)
