"""An OpenAI-compatible upstream's failures as the backend contract's errors, with nothing of the upstream's
address or key left in what a client is told."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from backends.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    ServiceError,
    UpstreamTimeout,
)
from backends.http1 import HttpError, Response
from backends.openai_wire import REQUEST_FIELDS, error_fields

logger = logging.getLogger(__name__)

_MAX_ERROR_BODY = 64 * 1024
_MAX_MESSAGE = 2000
_CONTEXT_MESSAGE = re.compile(
    r"context length|context window|maximum context|max_model_len|prompt is too long|input is too long"
    r"|too many (input )?tokens",
    re.IGNORECASE,
)


class Misconfigured(BackendUnavailable):
    """The upstream answered, and the answer shows the deployment is set up wrong (key, URL or model)."""


@dataclass(frozen=True)
class Secrets:
    """What an error message must never show a client: the upstream's address and key."""

    values: tuple[str, ...]

    def scrub(self, message: str) -> str:
        for value in self.values:
            if value:
                message = message.replace(value, "[upstream]")
        return message[:_MAX_MESSAGE]


def transport_error(exc: BaseException, pool: bool = False) -> ServiceError:
    """A request that got no HTTP answer (``pool``: it waited for a free connection past its limit)."""
    if pool:
        return BackendUnavailable("Too many requests are waiting for this model's endpoint; retry.")
    if isinstance(exc, TimeoutError):  # the client's connect and read timeouts are TimeoutErrors
        return UpstreamTimeout("The model endpoint did not answer in time.")
    return BackendUnavailable("The model endpoint is unreachable; retry.")


def status_error(status: int, body: object, *, chat: bool, secrets: Secrets, model: str) -> ServiceError:
    """An upstream's failing status (or an error event in its stream), without its address or key."""
    message, code, param = error_fields(body)
    message = secrets.scrub(message)
    if status in (400, 413, 422):
        text = message or "The model endpoint rejected the request."
        if code == "context_length_exceeded" or _CONTEXT_MESSAGE.search(text):
            return ContextLengthExceeded(text, param="messages" if chat else "prompt")
        return InvalidRequest(text, param=param if param in REQUEST_FIELDS else None)
    if status in (408, 504):
        return UpstreamTimeout("The model endpoint did not answer in time.")
    if status in (401, 403, 404):
        logger.error(
            "upstream refused the gateway model=%s status=%d (check base_url, model and api_key_env): %s",
            model,
            status,
            message,
        )
        return BackendUnavailable("This model is unavailable: its endpoint is misconfigured.")
    if status == 429:
        return BackendUnavailable("This model's endpoint is overloaded; retry.")
    return BackendUnavailable("This model's endpoint failed; retry.")


async def read_error_body(response: Response) -> bytes:
    """At most 64 KiB of a failing answer's body; the connection is kept only if it was read to its end."""
    try:
        return await response.read(limit=_MAX_ERROR_BODY)
    except HttpError:
        return b""  # the status is what matters; the message is a courtesy
