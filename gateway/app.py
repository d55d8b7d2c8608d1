"""The app factory: wires collaborators onto ``app.state`` and includes one router per endpoint."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api import (
    admin_audit,
    admin_catalog,
    admin_chips,
    admin_keys,
    admin_pools,
    chat_completions,
    completions,
    dashboard,
    embeddings,
    health,
    models,
    prometheus,
    rerank,
    usage,
)
from gateway.api.asgi_errors import client_gone_response, error_response
from gateway.api.body_limit import BodyLimit
from gateway.api.deps import Services
from gateway.api.direct_route import DirectRoutes, direct_endpoints
from gateway.api.drain import Drain, DrainGate
from gateway.api.health import HealthSource
from gateway.api.openapi_bodies import with_bodies
from gateway.billing.admission import Admission, Counters, CounterStore
from gateway.billing.ledger import Ledger, UsageRecord
from gateway.billing.metering import log_usage
from gateway.billing.overload import ModelGates
from gateway.catalog.routing import ModelRouter
from gateway.errors import (
    InvalidRequest,
    OpenAIError,
    ServiceError,
    internal_error,
    openai_error,
)
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.utilization import UtilizationMeter
from gateway.placement.live import LivePlacement
from gateway.protocol.pooling import EmbeddingBody, RerankBody, ScoreBody
from gateway.protocol.requests import ChatCompletionRequest, CompletionRequest
from gateway.serving.catalog_control import CatalogController
from gateway.tenancy.audit import AuditLog
from gateway.tenancy.keystore import KeyStore

logger = logging.getLogger(__name__)


async def _on_gateway_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(openai_error(exc))


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = "not_found" if exc.status_code == 404 else None
    return error_response(OpenAIError(exc.status_code, "invalid_request_error", code, str(exc.detail)))


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    return error_response(openai_error(InvalidRequest(str(exc))))


async def _on_client_gone(_: Request, exc: Exception) -> Response:
    return client_gone_response()


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error type=%s", type(exc).__name__, exc_info=exc)
    return error_response(openai_error(internal_error()))


class RequestClock:
    """Pure ASGI middleware: stamps when a request arrived, for the gateway-overhead measurement."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["started"] = time.perf_counter()
        await self.app(scope, receive, send)


def open_admission(
    database_url: str | None, sqlite_path: str, redis_url: str | None = None, redis_prefix: str = "maas"
) -> Admission:
    """Counters live in Redis when ``redis_url`` is set (keys under ``redis_prefix``), else in the ledger's
    database: either way every gateway on it shares them."""
    store: Counters
    if redis_url:
        from gateway.billing.redis_counters import RedisCounterStore

        store = RedisCounterStore(redis_url, prefix=redis_prefix)
    elif database_url:
        store = CounterStore.postgres(database_url)
    else:
        store = CounterStore.sqlite(sqlite_path)
    return Admission(store)


def build_app(
    model_router: ModelRouter,
    keystore: KeyStore,
    ledger: Ledger,
    metrics: GatewayMetrics,
    admission: Admission,
    health_source: HealthSource,
    catalog_controller: CatalogController | None = None,
    utilization: UtilizationMeter | None = None,
    model_gates: ModelGates | None = None,
    audit: AuditLog | None = None,
    drain: Drain | None = None,
    placement: LivePlacement | None = None,
    usage_log: Callable[[UsageRecord], None] = log_usage,
) -> FastAPI:
    """The gateway's app on its collaborators; ``usage_log`` writes each settled request's usage line."""
    app = FastAPI(title="MaaS gateway", version="0.1.0", docs_url=None, redoc_url=None)
    # What the request path uses, in one object; what only the operator's routes use, on its own.
    app.state.services = Services(
        keystore=keystore,
        model_router=model_router,
        ledger=ledger,
        metrics=metrics,
        admission=admission,
        utilization=utilization,
        model_gates=model_gates or ModelGates(),
        placement=placement or LivePlacement(on_spill=metrics.spilled),
        drain=drain or Drain(),
        usage_log=usage_log,
    )
    app.state.catalog_controller = catalog_controller
    app.state.health_source = health_source
    app.state.started_at = time.time()
    app.state.audit = audit or AuditLog(keystore.database)  # beside the tenants and keys it is about
    app.add_exception_handler(ServiceError, _on_gateway_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(ClientDisconnect, _on_client_gone)
    app.add_exception_handler(Exception, _on_unexpected)
    for module in (
        chat_completions,
        completions,
        embeddings,
        rerank,
        models,
        usage,
        admin_keys,
        admin_audit,
        admin_catalog,
        admin_chips,
        admin_pools,
        dashboard,
        health,
        prometheus,
    ):
        app.include_router(module.router)
    # Innermost first: a middleware added later wraps the ones before it.
    app.add_middleware(DirectRoutes, endpoints=direct_endpoints(app.routes))
    app.add_middleware(BodyLimit)
    app.add_middleware(DrainGate, drain=app.state.services.drain)
    app.add_middleware(RequestClock)
    app.openapi = with_bodies(  # type: ignore[method-assign]
        app,
        [
            ChatCompletionRequest,
            CompletionRequest,
            EmbeddingBody,
            RerankBody,
            ScoreBody,
            admin_keys.TenantBody,
            admin_keys.KeyBody,
        ],
    )
    return app
