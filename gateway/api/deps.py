"""Typed accessors for what the app factory put on ``app.state``, and request-edge helpers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from gateway.api.drain import Drain
from gateway.billing.admission import Admission
from gateway.billing.ledger import Ledger, UsageRecord
from gateway.billing.overload import ModelGates
from gateway.catalog.routing import ModelRouter
from gateway.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    InvalidRequest,
    KeysUnavailable,
    PermissionDenied,
)
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.utilization import UtilizationMeter
from gateway.placement.live import LivePlacement
from gateway.serving.catalog_control import CatalogController
from gateway.tenancy.audit import AuditLog
from gateway.tenancy.keystore import KeyStore, Principal

Body = TypeVar("Body", bound=BaseModel)
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """The collaborators of the request path, on ``app.state`` as one object: each attribute of Starlette's
    ``app.state`` is a Python ``__getattr__`` call, and a call used seven. The ``get_*`` accessors read
    them from here too."""

    keystore: KeyStore
    model_router: ModelRouter
    ledger: Ledger
    metrics: GatewayMetrics
    admission: Admission
    utilization: UtilizationMeter | None
    model_gates: ModelGates
    placement: LivePlacement
    drain: Drain
    usage_log: Callable[[UsageRecord], None]


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_model_router(request: Request) -> ModelRouter:
    return get_services(request).model_router


def get_keystore(request: Request) -> KeyStore:
    return get_services(request).keystore


def get_audit(request: Request) -> AuditLog:
    audit: AuditLog = request.app.state.audit
    return audit


def audit(request: Request, operator: Principal, action: str, target: str, detail: dict[str, Any]) -> None:
    """Record an operator's action (never a secret in ``detail``)."""
    get_audit(request).record(operator.tenant, operator.key_id, action, target, detail)


def get_catalog_controller(request: Request) -> CatalogController:
    controller: CatalogController | None = request.app.state.catalog_controller
    if controller is None:
        raise BackendUnavailable("This gateway was started without a model runtime; catalogs cannot change.")
    return controller


def get_utilization(request: Request) -> UtilizationMeter | None:
    return get_services(request).utilization


def get_admission(request: Request) -> Admission:
    return get_services(request).admission


def get_model_gates(request: Request) -> ModelGates:
    return get_services(request).model_gates


def get_placement(request: Request) -> LivePlacement:
    return get_services(request).placement


def get_ledger(request: Request) -> Ledger:
    return get_services(request).ledger


def get_drain(request: Request) -> Drain:
    return get_services(request).drain


def get_metrics(request: Request) -> GatewayMetrics:
    return get_services(request).metrics


def header(request: Request, name: bytes) -> str | None:
    """The first value of the header ``name`` (lower case), read from the scope: ``request.headers``
    builds a ``Headers`` object and looks a name up in Python, twice the calls for one value."""
    for key, value in request.scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


async def authenticate(request: Request) -> Principal:
    """FastAPI dependency: the caller's principal from ``Authorization: Bearer <key>``, or 401."""
    return await authenticate_with(request, get_keystore(request))


async def authenticate_with(request: Request, keystore: KeyStore) -> Principal:
    """``authenticate`` against ``keystore`` (the request's services already found)."""
    scheme, _, secret = (header(request, b"authorization") or "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise AuthenticationFailed("You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.")
    try:  # a database round trip, if any, runs off the event loop: a slow database stalls only its callers
        principal = await keystore.authenticate_async(secret)
    except Exception as exc:
        logger.warning("key store unreachable error=%s", type(exc).__name__)
        raise KeysUnavailable("API keys cannot be checked right now; retry shortly.") from exc
    if principal is None:
        raise AuthenticationFailed("Incorrect API key provided.")
    return principal


Authenticated = Annotated[Principal, Depends(authenticate)]


async def authenticate_admin(request: Request) -> Principal:
    """FastAPI dependency: an operator (admin) key, else 401/403."""
    principal = await authenticate(request)
    if not principal.admin:
        raise PermissionDenied("This route needs an operator (admin) key.")
    return principal


Admin = Annotated[Principal, Depends(authenticate_admin)]


def _param(loc: tuple[int | str, ...]) -> str | None:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p.startswith(("function-", "list[")))]
    return ".".join(parts) or None


async def parse_body(request: Request, model: type[Body]) -> Body:
    """Validate the JSON body; malformed JSON and wrong types become a 400 naming the parameter."""
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] == "json_invalid":
            raise InvalidRequest(f"The request body is not valid JSON: {err['msg']}") from None
        if err["type"] == "model_type":
            raise InvalidRequest("The request body must be a JSON object.") from None
        param = _param(tuple(err["loc"]))
        raise InvalidRequest(f"Invalid value for '{param}': {err['msg']}", param=param) from None
