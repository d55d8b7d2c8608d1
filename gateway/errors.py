"""One error hierarchy, mapped to the OpenAI error object in one place.

Client errors (4xx) say what the caller did wrong; server errors (5xx) never leak internals. The root and
the errors that backends raise are the backend contract's (``backends.errors``); the gateway's own
refusals subclass the same root here, and ``openai_error`` is the one mapping from a type to the HTTP
status, ``type`` and ``code`` a caller sees, whether the error started in the gateway or in a replica.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from backends.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    InvalidUpstreamAnswer,
    ReplicaLost,
    ServiceError,
    UpstreamTimeout,
    replica_lost,
)

__all__ = [
    "AuthenticationFailed",
    "CLIENT_CLOSED_REQUEST",
    "CatalogAttached",
    "ClientGone",
    "BackendUnavailable",
    "ContextLengthExceeded",
    "CountersUnavailable",
    "InsufficientCapacity",
    "InvalidRequest",
    "InvalidUpstreamAnswer",
    "KeysUnavailable",
    "LedgerUnavailable",
    "ModelNotFound",
    "ModelSaturated",
    "ModelStarting",
    "NotFound",
    "OpenAIError",
    "Overloaded",
    "PermissionDenied",
    "PoolNotAllowed",
    "QuotaExceeded",
    "RateLimited",
    "ReplicaLost",
    "RequestTooLarge",
    "ServiceError",
    "ShuttingDown",
    "TenantOverShare",
    "UpstreamTimeout",
    "as_gateway_error",
    "internal_error",
    "openai_error",
    "replica_lost",
]


CLIENT_CLOSED_REQUEST = 499
"""nginx's status for a request its client abandoned: logged and counted, never read by the client."""


def _retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class AuthenticationFailed(ServiceError):
    """No key, or a key the gateway does not know."""


class PermissionDenied(ServiceError):
    """A known key asking for what it may not use (a model outside its list, an admin route)."""


class PoolNotAllowed(PermissionDenied):
    """The caller may be served only from pools in which the model has no deployment."""

    @classmethod
    def for_model(cls, model: str, allowed: frozenset[str], pools: list[str]) -> PoolNotAllowed:
        return cls(
            f"The model `{model}` runs in pools {', '.join(sorted(set(pools)))}; your organization may be "
            f"served only from {', '.join(sorted(allowed)) or 'no pool'}."
        )


class NotFound(ServiceError):
    """A route or resource that does not exist."""


class ModelNotFound(NotFound):
    """The request names a model the catalog does not have."""


class Overloaded(ServiceError):
    """A model's queue is full: the request is refused at once rather than left waiting."""

    @classmethod
    def now(cls, model: str, retry_after_s: float) -> Overloaded:
        error = cls(cls.explain.format(model=model))
        error.headers = {"retry-after": _retry_after(retry_after_s)}
        return error

    explain: str = "The model `{model}` is saturated; retry later."


class TenantOverShare(Overloaded):
    """The model is saturated and the caller's tenant already holds more than its share of it."""

    explain: str = (
        "The model `{model}` is saturated and your organization is using more than its share of it; "
        "retry later."
    )


class ModelSaturated(Overloaded):
    """The model is saturated by requests of one tenant alone (the caller's)."""


class ModelStarting(ServiceError):
    """A deployment scaled to zero had no replica ready within its start wait; one goes on starting."""

    @classmethod
    def now(cls, model: str, waited_s: float, retry_after_s: float) -> ModelStarting:
        error = cls(
            f"The model `{model}` is starting a replica (it was scaled to zero while idle) and none was "
            f"ready within {waited_s:.0f} s; retry after the Retry-After seconds."
        )
        error.headers = {"retry-after": _retry_after(retry_after_s)}
        return error


class ClientGone(ServiceError):
    """The client closed its connection before its answer started (``CLIENT_CLOSED_REQUEST``)."""


class ShuttingDown(ServiceError):
    """The gateway is draining before it stops: it takes no new requests."""


class LedgerUnavailable(ServiceError):
    """A request's usage record could not be made durable, so its answer is withheld."""


class KeysUnavailable(ServiceError):
    """The database that holds the API keys could not be reached, so a key not in cache cannot be checked."""


class CountersUnavailable(ServiceError):
    """The rate-limit and budget counters (the database or Redis) could not be reached, so a limited
    caller's request cannot be admitted safely."""


class RequestTooLarge(ServiceError):
    """The request body is over the gateway's size limit."""


class InsufficientCapacity(ServiceError):
    """An operator's change asks for chips the cluster does not have (nothing was changed)."""


class CatalogAttached(ServiceError):
    """A catalog change sent to an attached gateway, which follows the deploying gateway's catalog."""


class RateLimited(ServiceError):
    """A key or tenant is over its requests or tokens per minute (``per`` says which)."""

    per = "requests"

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
        error.headers = {
            "retry-after": _retry_after(reset_s),
            "x-ratelimit-limit-tokens": str(limit),
            "x-ratelimit-remaining-tokens": str(remaining),
            "x-ratelimit-reset-tokens": f"{reset_s:.0f}s",
        }
        error.per = "tokens"
        return error


class QuotaExceeded(ServiceError):
    """The tenant's budget for the period is spent."""

    @classmethod
    def for_period(cls, period: str, reset_s: float) -> QuotaExceeded:
        error = cls(f"You exceeded your current quota for this {period}; it renews when the period ends.")
        error.headers = {"retry-after": _retry_after(reset_s)}
        return error


@dataclass(frozen=True)
class OpenAIError:
    """What a caller is sent for an error: the HTTP status and OpenAI's ``{"error": {...}}`` object."""

    status: int
    type: str
    code: str | None
    message: str
    param: str | None = None
    headers: dict[str, str] | None = None

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


_INVALID = "invalid_request_error"

# The mapping: each type to (HTTP status, OpenAI ``type``, default ``code``). A subclass without its own
# row takes its nearest ancestor's.
_OPENAI: dict[type[ServiceError], tuple[int, str, str | None]] = {
    ServiceError: (500, "server_error", None),
    InvalidRequest: (400, _INVALID, None),
    ContextLengthExceeded: (400, _INVALID, "context_length_exceeded"),
    AuthenticationFailed: (401, _INVALID, "invalid_api_key"),
    PermissionDenied: (403, "permission_error", None),
    PoolNotAllowed: (403, "permission_error", "pool_not_allowed"),
    NotFound: (404, _INVALID, "not_found"),
    ModelNotFound: (404, _INVALID, "model_not_found"),
    InsufficientCapacity: (409, _INVALID, "insufficient_chips"),
    CatalogAttached: (409, _INVALID, "catalog_attached"),
    RequestTooLarge: (413, _INVALID, "request_too_large"),
    ClientGone: (CLIENT_CLOSED_REQUEST, _INVALID, "client_closed_request"),
    Overloaded: (503, "service_unavailable", "model_overloaded"),
    TenantOverShare: (429, "requests", "tenant_over_share"),
    ModelSaturated: (503, "service_unavailable", "model_overloaded"),
    ModelStarting: (503, "service_unavailable", "model_starting"),
    ShuttingDown: (503, "service_unavailable", "shutting_down"),
    LedgerUnavailable: (503, "service_unavailable", "ledger_unavailable"),
    CountersUnavailable: (503, "service_unavailable", "counters_unavailable"),
    KeysUnavailable: (503, "service_unavailable", "keys_unavailable"),
    RateLimited: (429, "requests", "rate_limit_exceeded"),  # type: the limit's ``per``
    QuotaExceeded: (429, "insufficient_quota", "insufficient_quota"),
    BackendUnavailable: (503, "service_unavailable", "backend_unavailable"),
    InvalidUpstreamAnswer: (502, "server_error", "invalid_upstream_answer"),
    UpstreamTimeout: (504, "timeout", "timeout"),
}


def openai_error(error: ServiceError) -> OpenAIError:
    """The status and OpenAI error object a caller gets for ``error``."""
    for cls in type(error).__mro__:
        row = _OPENAI.get(cls)
        if row is not None:
            status, kind, code = row
            if isinstance(error, RateLimited):
                kind = error.per
            return OpenAIError(
                status, kind, error.code or code, error.message, error.param, headers=error.headers
            )
    raise AssertionError("ServiceError has a row")  # every ServiceError reaches the root's row


def internal_error() -> ServiceError:
    return ServiceError("The server had an error while processing your request.")


def as_gateway_error(exc: BaseException) -> ServiceError:
    """Map any exception to a ``ServiceError``: ours pass through (also when Ray wrapped them)."""
    cause: BaseException | None = exc
    for _ in range(8):
        if cause is None:
            break
        # RayTaskError keeps the replica's exception in ``cause`` (and may also subclass it).
        inner = getattr(cause, "cause", None)
        if isinstance(inner, ServiceError):
            return inner
        if isinstance(cause, ServiceError):
            return cause
        cause = inner or cause.__cause__
    if type(exc).__name__ in {"RayActorError", "ActorDiedError", "ActorUnavailableError"}:
        return replica_lost()
    return internal_error()
