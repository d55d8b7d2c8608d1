"""GET /admin/chips: models by chip, healthy replicas, the chips the cluster offers and has free, and the
gateways in front of them (the one that answered, and every live one of the installation with its role)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from gateway.api.deps import Admin, get_catalog_controller
from gateway.serving.chip_report import chip_report

router = APIRouter()


@router.get("/admin/chips")
async def chips(request: Request, _: Admin) -> dict[str, Any]:
    controller = get_catalog_controller(request)
    runtime = controller.runtime
    cluster = await asyncio.to_thread(runtime.cluster_chips)  # a call to Ray's GCS
    gateways = await asyncio.to_thread(runtime.membership.members)  # a call to the gateway directory
    report = chip_report(
        controller.catalog,
        runtime.health.deployment_statuses(),
        runtime.health.healthy_replicas(),
        cluster,
        runtime.channel_counts(),
    )
    return {**report, "gateways": gateways}
