"""One error hierarchy, mapped to the OpenAI error object in one place.

Client errors (4xx) say what the caller did wrong; server errors (5xx) never leak internals. Backends raise
these types too, so the mapping holds whether an error starts in the gateway or in a replica.
"""

from __future__ import annotations

import math
from typing import Any


class GatewayError(Exception):
    """Base of every error the gateway turns into an OpenAI error object."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None
    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable across Ray with keyword-only fields intact.
        return (_rebuild, (type(self), self.message, self.param, self.code))

    def to_body(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def _rebuild(cls: type[GatewayError], message: str, param: str | None, code: str | None) -> GatewayError:
    return cls(message, param=param, code=code)


class ClientError(GatewayError):
    status = 400
    type = "invalid_request_error"


class InvalidRequest(ClientError):
    """Malformed JSON, wrong types, out-of-range values, unsupported options."""


class ContextLengthExceeded(ClientError):
    code = "context_length_exceeded"


class AuthenticationFailed(ClientError):
    status = 401
    code = "invalid_api_key"


class PermissionDenied(ClientError):
    status = 403
    type = "permission_error"


class NotFound(ClientError):
    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class InsufficientCapacity(ClientError):
    """An operator's change asks for chips the cluster does not have (nothing was changed)."""

    status = 409
    code = "insufficient_chips"


def _retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class RateLimited(ClientError):
    """A key or tenant is over its requests or tokens per minute."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    @classmethod
    def requests(cls, scope: str, limit: int, reset_s: float) -> RateLimited:
        error = cls(f"Rate limit reached for {scope.split(':')[0]} requests per minute: limit {limit}.")
        error.headers = {
            "retry-after": _retry_after(reset_s),
            "x-ratelimit-limit-requests": str(limit),
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{reset_s:.0f}s",
        }
        return error

    @classmethod
    def tokens(cls, scope: str, limit: int, remaining: int, reset_s: float) -> RateLimited:
        error = cls(
            f"Rate limit reached for {scope.split(':')[0]} tokens per minute: limit {limit}, "
            f"remaining {remaining}. Lower max_tokens or retry later."
        )
        error.type = "tokens"
        error.headers = {
            "retry-after": _retry_after(reset_s),
            "x-ratelimit-limit-tokens": str(limit),
            "x-ratelimit-remaining-tokens": str(remaining),
            "x-ratelimit-reset-tokens": f"{reset_s:.0f}s",
        }
        return error


class QuotaExceeded(ClientError):
    """The tenant's budget for the period is spent."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"

    @classmethod
    def for_period(cls, period: str, reset_s: float) -> QuotaExceeded:
        error = cls(f"You exceeded your current quota for this {period}; it renews when the period ends.")
        error.headers = {"retry-after": _retry_after(reset_s)}
        return error


class ServerError(GatewayError):
    status = 500
    type = "server_error"


class BackendUnavailable(ServerError):
    """No healthy replica could take the request, or the replica died while serving it."""

    status = 503
    type = "service_unavailable"
    code = "backend_unavailable"


class UpstreamTimeout(ServerError):
    """The model's endpoint (an upstream server) took longer than its configured timeout."""

    status = 504
    type = "timeout"
    code = "timeout"


def replica_lost() -> BackendUnavailable:
    """The replica that held a request went away (its process died, its connection dropped)."""
    return BackendUnavailable("The model replica serving this request stopped; retry.")


def internal_error() -> ServerError:
    return ServerError("The server had an error while processing your request.")


def as_gateway_error(exc: BaseException) -> GatewayError:
    """Map any exception to a ``GatewayError``: ours pass through (also when Ray wrapped them)."""
    cause: BaseException | None = exc
    for _ in range(8):
        if cause is None:
            break
        # RayTaskError keeps the replica's exception in ``cause`` (and may also subclass it).
        inner = getattr(cause, "cause", None)
        if isinstance(inner, GatewayError):
            return inner
        if isinstance(cause, GatewayError):
            return cause
        cause = inner or cause.__cause__
    if type(exc).__name__ in {"RayActorError", "ActorDiedError", "ActorUnavailableError"}:
        return replica_lost()
    return internal_error()
