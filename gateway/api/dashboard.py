"""The built-in operator dashboard: static page and scripts (public, no data), data behind an admin key.

The page asks for the operator key in a form and keeps it in the tab's sessionStorage; it never goes into
a URL. Every number comes from ``GET /admin/dashboard/data`` with the key as a Bearer token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from gateway.api.deps import Admin, get_ledger, get_metrics, get_utilization
from gateway.errors import NotFound
from gateway.observability.dashboard import STATIC_DIR, dashboard_data

router = APIRouter()

FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "charts.js": "text/javascript"}
NO_CACHE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


@router.get("/dashboard")
async def dashboard_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "dashboard.html", media_type="text/html", headers=NO_CACHE)


@router.get("/dashboard/static/{name}")
async def dashboard_file(name: str) -> FileResponse:
    if name not in FILES:
        raise NotFound(f"No such file: {name}.")
    return FileResponse(STATIC_DIR / name, media_type=FILES[name], headers=NO_CACHE)


@router.get("/admin/dashboard/data")
async def data(request: Request, _: Admin) -> dict[str, Any]:
    utilization = get_utilization(request)
    if utilization is not None:
        utilization.tick()
    return await dashboard_data(get_ledger(request), get_metrics(request).collected())
