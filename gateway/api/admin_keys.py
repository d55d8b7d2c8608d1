"""Operator routes for tenants and keys: the same as `maas tenants` and `maas keys`, behind an admin key."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.deps import Admin, audit, get_keystore, parse_body
from gateway.api.openapi_bodies import json_body
from gateway.errors import InvalidRequest, NotFound
from gateway.tenancy.keystore import Budget, RateLimits

router = APIRouter()

Limit = Annotated[int, Field(ge=1, le=2**31 - 1)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantBody(_Body):
    name: str = Field(min_length=1, max_length=128)
    rpm: Limit | None = None
    tpm: Limit | None = None
    budget_tokens: Annotated[int, Field(ge=0, le=2**62)] | None = None
    budget: Annotated[Decimal, Field(ge=0, le=10**9)] | None = None  # money per period
    period: Literal["day", "month"] = "month"
    pools: list[str] | None = None  # capacity pools its requests may be served from; None: any


class KeyBody(_Body):
    tenant: str = Field(min_length=1, max_length=128)
    rpm: Limit | None = None
    tpm: Limit | None = None
    expires_at: datetime | None = None
    models: list[str] | None = None
    pools: list[str] | None = None  # narrows the tenant's pools
    admin: bool = False


@router.post("/admin/tenants", openapi_extra=json_body(TenantBody))
async def save_tenant(request: Request, operator: Admin) -> dict[str, Any]:
    body = await parse_body(request, TenantBody)
    budget = None
    if body.budget_tokens is not None or body.budget is not None:
        nanos = None if body.budget is None else int(body.budget * 1_000_000_000)
        budget = Budget(period=body.period, tokens=body.budget_tokens, nanos=nanos)
    try:
        get_keystore(request).set_tenant(
            body.name,
            limits=RateLimits(body.rpm, body.tpm),
            budget=budget,
            pools=None if body.pools is None else tuple(body.pools),
        )
    except ValueError as exc:  # the key store's own checks (name length, pool names)
        raise InvalidRequest(str(exc), param="pools" if "pool" in str(exc) else "name") from None
    saved = body.model_dump(mode="json")
    audit(request, operator, "tenant.saved", body.name, saved)
    return {"object": "tenant", **saved}


@router.post("/admin/keys", openapi_extra=json_body(KeyBody))
async def create_key(request: Request, operator: Admin) -> dict[str, Any]:
    body = await parse_body(request, KeyBody)
    if body.expires_at is not None and body.expires_at.timestamp() <= datetime.now().timestamp():
        raise InvalidRequest("expires_at must be in the future.", param="expires_at")
    try:
        created = get_keystore(request).create_key(
            body.tenant,
            admin=body.admin,
            limits=RateLimits(body.rpm, body.tpm),
            expires_at=None if body.expires_at is None else body.expires_at.timestamp(),
            models=tuple(body.models) if body.models else None,
            pools=None if body.pools is None else tuple(body.pools),
        )
    except ValueError as exc:  # the key store's own checks (tenant name, model names, pool names)
        raise InvalidRequest(str(exc)) from None
    detail = {"key_id": created.key_id, **body.model_dump(mode="json", exclude={"tenant"})}
    audit(request, operator, "key.created", created.tenant, detail)
    return {"object": "api_key", "id": created.key_id, "tenant": created.tenant, "key": created.secret}


@router.delete("/admin/keys/{key_id}")
async def revoke_key(key_id: str, request: Request, operator: Admin) -> dict[str, Any]:
    if not get_keystore(request).revoke_key(key_id):
        raise NotFound(f"No active key with id {key_id!r}.", param="key_id")
    audit(request, operator, "key.revoked", key_id, {})
    return {"object": "api_key", "id": key_id, "revoked": True}
