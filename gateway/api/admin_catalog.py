"""POST /admin/catalog: apply a new catalog (YAML or JSON) to the running gateway; GET shows the current."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml
from fastapi import APIRouter, Request

from gateway.api.deps import Admin, audit, get_catalog_controller
from gateway.catalog.schema import CatalogError, parse_catalog
from gateway.errors import InvalidRequest

router = APIRouter()


@router.post("/admin/catalog")
async def apply_catalog(request: Request, operator: Admin) -> dict[str, Any]:
    controller = get_catalog_controller(request)
    try:
        data = yaml.safe_load(await request.body())
        catalog = parse_catalog(data, "request body")
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"The catalog is not valid YAML or JSON: {exc}") from None
    except CatalogError as exc:
        raise InvalidRequest(str(exc), param="catalog") from None
    result = await controller.apply(catalog)
    changes = dataclasses.asdict(result)
    audit(request, operator, "catalog.applied", "catalog", changes)
    return {"object": "catalog.apply", **changes}


@router.get("/admin/catalog")
async def current_catalog(request: Request, _: Admin) -> dict[str, Any]:
    catalog = get_catalog_controller(request).catalog
    return {"object": "catalog", **catalog.model_dump(mode="json")}
