"""The app factory: wires collaborators onto ``app.state`` and includes one router per endpoint."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gateway.api import chat_completions, completions, health, models
from gateway.api.health import HealthSource
from gateway.errors import ClientError, GatewayError, InvalidRequest, internal_error
from gateway.keystore import KeyStore
from gateway.metering import UsageLog
from gateway.routing import ModelRouter

logger = logging.getLogger(__name__)


def _error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.to_body(), status_code=error.status)


async def _on_gateway_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return _error_response(exc)


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    error = ClientError(str(exc.detail))
    error.status = exc.status_code
    error.code = "not_found" if exc.status_code == 404 else None
    return _error_response(error)


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    return _error_response(InvalidRequest(str(exc)))


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error type=%s", type(exc).__name__, exc_info=exc)
    return _error_response(internal_error())


def build_app(
    model_router: ModelRouter,
    keystore: KeyStore,
    usage_log: UsageLog,
    health_source: HealthSource,
) -> FastAPI:
    app = FastAPI(title="MaaS gateway", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.model_router = model_router
    app.state.keystore = keystore
    app.state.usage_log = usage_log
    app.state.health_source = health_source
    app.add_exception_handler(GatewayError, _on_gateway_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
    for module in (chat_completions, completions, models, health):
        app.include_router(module.router)
    return app
