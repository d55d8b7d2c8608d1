"""The errors of the backend contract: what a backend raises when a request cannot be served.

They say what went wrong, not how a caller is told: ``gateway.errors`` maps each type to its HTTP status and
OpenAI error object, in one place. The gateway's own refusals (authentication, limits) subclass
``ServiceError`` there, so one hierarchy covers an error whether it starts in the gateway or in a replica.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base of every error a caller is told about as an OpenAI error object.

    ``code`` overrides the type's default code; ``headers`` go on the HTTP answer (``Retry-After``, say).
    """

    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable across Ray and the replica channel with keyword-only fields intact.
        return (_rebuild, (type(self), self.message, self.param, self.code))


def _rebuild(cls: type[ServiceError], message: str, param: str | None, code: str | None) -> ServiceError:
    return cls(message, param=param, code=code)


class InvalidRequest(ServiceError):
    """The request cannot be served as asked: wrong types, out-of-range values, unsupported options."""


class ContextLengthExceeded(InvalidRequest):
    """The prompt, or the prompt with ``max_tokens``, does not fit the model's context."""


class BackendUnavailable(ServiceError):
    """No healthy replica could take the request, or the replica died while serving it."""


class InvalidUpstreamAnswer(ServiceError):
    """An upstream answered something the request ruled out: output that does not fit the requested
    JSON schema, or a tool call to a function that was not offered or with arguments that do not fit it."""


class EngineDead(BackendUnavailable):
    """The replica's engine died and cannot recover in place: the replica has to be replaced."""


class UpstreamTimeout(ServiceError):
    """The model's endpoint (an upstream server) took longer than its configured timeout."""


class ReplicaLost(BackendUnavailable):
    """The replica that held a request went away (its process died, its connection dropped); another
    replica of the same deployment may take the request if nothing was sent yet."""


def replica_lost() -> BackendUnavailable:
    """The replica that held a request went away (its process died, its connection dropped)."""
    return ReplicaLost("The model replica serving this request stopped; retry.")
