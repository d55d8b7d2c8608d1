"""GET /health: 200 when every model has a running deployment, else 503 with what is wrong (a model not
running, or the gateway draining before it stops)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.api.deps import get_drain

router = APIRouter()

HealthSource = Callable[[], dict[str, str]]


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    source: HealthSource = request.app.state.health_source
    models = source()
    if get_drain(request).draining:
        return JSONResponse({"status": "draining", "models": models}, status_code=503)
    healthy = all(status == "RUNNING" for status in models.values())
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", "models": models},
        status_code=200 if healthy else 503,
    )
