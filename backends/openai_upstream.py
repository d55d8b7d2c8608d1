"""An OpenAI-compatible HTTP server as the engine: a vendor runtime (MindIE, a vendor's vLLM build, SGLang,
TGI) or a rented pool's endpoint, served behind the gateway like any other backend.

Every request is streamed from the upstream (``stream: true``, usage asked for with
``stream_options.include_usage`` and, where honoured, ``continuous_usage_stats``) and passed on chunk by
chunk (the format is read and written in ``backends.openai_wire``). Usage is the upstream's own whenever it
sends any; for an upstream that sends none, ``backends.upstream_usage`` counts it with the model's tokenizer
and the usage is marked ``estimated``.

Failures are the gateway's error types: 400/422 → ``InvalidRequest`` (``ContextLengthExceeded`` when the
upstream says so) with the upstream's message; 401/403/404 (operator misconfiguration), 429 and 5xx →
``BackendUnavailable`` without the upstream's URL or key; timeouts → ``UpstreamTimeout`` (504). A refused
connection, a 429 or a 5xx is retried with a short backoff, but only before the first byte of an answer;
an answer cut off after that ends with an error after the chunks already sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson

from backends.base import ChatPrompt, GenerationChunk, GenerationRequest, ModelSpec
from backends.errors import BackendUnavailable, ServiceError, UpstreamTimeout
from backends.http1 import (
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    Http1Pool,
    HttpError,
    PoolTimeout,
    Response,
)
from backends.openai_upstream_options import MAX_BACKOFF_S, OpenAIUpstreamOptions
from backends.openai_wire import (
    Answer,
    model_ids,
    request_body,
    whole_as_events,
)
from backends.upstream_checks import AnswerCheck, refuse_undeclared
from backends.upstream_errors import (
    Misconfigured,
    Secrets,
    read_error_body,
    status_error,
    transport_error,
)
from backends.upstream_usage import TokenCounter

logger = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class OpenAIUpstreamBackend:
    """One upstream OpenAI-compatible endpoint serving one model."""

    Options = OpenAIUpstreamOptions
    RUNS_IN_GATEWAY = True
    """Only an HTTP client: served from the gateway's event loop unless the deployment asks for chips."""

    def __init__(self, spec: ModelSpec, options: OpenAIUpstreamOptions) -> None:
        self.spec = spec
        self.options = options
        self._client: Http1Pool | None = None
        self._counter = TokenCounter()
        self._secrets = Secrets((options.base_url, urlsplit(options.base_url).netloc))
        self._closing: asyncio.Task[None] | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> OpenAIUpstreamBackend:
        return cls(spec, OpenAIUpstreamOptions.model_validate(spec.engine))

    async def start(self) -> None:
        options = self.options
        headers = {
            "Accept": "text/event-stream, application/json",
            "Content-Type": "application/json",
            **options.headers,
        }
        if options.api_key_env is not None:
            key = os.environ.get(options.api_key_env)
            if not key:
                raise RuntimeError(
                    f"model {self.spec.name}: environment variable {options.api_key_env} (api_key_env) is "
                    "not set in the gateway's environment"
                )
            headers["Authorization"] = f"Bearer {key}"
            self._secrets = Secrets((*self._secrets.values, key))
        self._counter = await asyncio.to_thread(TokenCounter.load, self.spec.weights_path)
        # A free connection is waited for up to read_timeout_s, a new one is opened within connect_timeout_s.
        self._client = Http1Pool(
            options.base_url,
            max_connections=options.max_connections,
            connect_timeout_s=options.connect_timeout_s,
            pool_timeout_s=options.read_timeout_s + options.connect_timeout_s,
            headers=headers,
        )
        try:
            await self.check_health()
        except Misconfigured:
            await self.aclose()
            raise
        except BackendUnavailable as exc:  # down for now: requests answer 503 until it is back
            logger.warning("upstream of model %s not reachable at start: %s", self.spec.name, exc.message)

    async def check_health(self) -> None:
        client = self._require_client()
        try:
            response = await client.request("GET", "/models", read_timeout_s=self.options.connect_timeout_s)
            status = response.status
            body = await response.read() if status == 200 else b""
            response.close()  # after read() a no-op; otherwise the unread body goes with its connection
        except TimeoutError:
            raise BackendUnavailable("The model endpoint did not answer its health check in time.") from None
        except HttpError as exc:
            raise BackendUnavailable(f"The model endpoint is unreachable ({type(exc).__name__}).") from None
        if status in (401, 403, 404):
            raise Misconfigured(
                f"The model endpoint answered GET /models with {status}: check base_url and api_key_env."
            )
        if status != 200:
            raise BackendUnavailable(f"The model endpoint answered GET /models with {status}.")
        served = model_ids(body)
        if served is not None and self.options.model not in served:
            raise Misconfigured(
                f"The model endpoint does not serve {self.options.model!r}; it serves {', '.join(served)}."
            )

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop left to close it on: its sockets close with it
        self._closing = loop.create_task(client.close())

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def _require_client(self) -> Http1Pool:
        if self._client is None:
            raise BackendUnavailable("The model's upstream client is not started.")
        return self._client

    # -- request path ---------------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        client = self._require_client()
        refuse_undeclared(request, self.options.structured_outputs, self.options.tool_choice_auto)
        path, body = request_body(request, self.options.model, self.options.continuous_usage)
        chat = isinstance(request.prompt, ChatPrompt)
        answer = Answer(request.prompt, request.sampling.n, self._counter)
        check = AnswerCheck(request)
        response = await self._open(client, path, body, request.request_id, chat)
        if request.whole:  # one JSON answer: no per-token events to parse (most of the CPU of a stream)
            whole = await self._whole(response, answer, chat)
            if check.needed:
                check.take(whole.choices)
                check.verify()  # before the first byte: the model's next deployment may take it
            yield whole
            return
        done = False
        try:
            async with contextlib.aclosing(self._events(response)) as events:
                async for data in events:
                    if data == "[DONE]":
                        done = True
                        break
                    deltas = answer.take(self._payload(data, chat), chat)
                    if check.needed:
                        check.take(deltas)
                    if deltas:
                        usage = answer.usage()
                        answer.sent_usage = usage
                        yield GenerationChunk(choices=deltas, usage=usage)
        finally:
            response.close()  # also when the consumer stops: the upstream sees the request go away
        if not answer.complete():
            reason = "ended the answer early" if done else "cut the answer off"
            logger.warning("upstream %s model=%s request_id=%s", reason, self.spec.name, request.request_id)
            raise BackendUnavailable(f"The model endpoint {reason}; retry.")
        if check.needed:
            check.verify()
        final = answer.usage(final=True)
        if final != answer.sent_usage:
            yield GenerationChunk(choices=[], usage=final)

    async def _whole(self, response: Response, answer: Answer, chat: bool) -> GenerationChunk:
        try:
            raw = await response.read()
        except TimeoutError:
            raise UpstreamTimeout("The model endpoint did not answer in time.") from None
        except HttpError:
            raise BackendUnavailable("The model endpoint cut the answer off; retry.") from None
        try:
            payload = _loads(raw)
        except ValueError:
            raise BackendUnavailable("The model endpoint sent an answer that is not JSON.") from None
        if not isinstance(payload, dict):
            raise BackendUnavailable("The model endpoint sent an answer that is not an object.")
        deltas = [delta for event in whole_as_events(payload, chat) for delta in answer.take(event, chat)]
        if not answer.complete():
            raise BackendUnavailable("The model endpoint ended the answer early; retry.")
        return GenerationChunk(choices=deltas, usage=answer.usage(final=True))

    async def _open(
        self, client: Http1Pool, path: str, body: dict[str, Any], request_id: str, chat: bool
    ) -> Response:
        """Send the request; retry refused connections, 429 and 5xx, never once an answer has begun."""
        attempts = self.options.retries + 1
        data = orjson.dumps(body)
        stream = bool(body["stream"])
        read_timeout = self.options.read_timeout_s if stream else self.options.answer_timeout_s
        headers = {"X-Request-Id": request_id}
        for attempt in range(attempts):
            last = attempt == attempts - 1
            wait = min(self.options.retry_backoff_s * 2**attempt, MAX_BACKOFF_S)
            try:
                response = await client.request(
                    "POST", path, data, headers=headers, read_timeout_s=read_timeout
                )
            except PoolTimeout as exc:
                raise transport_error(exc, pool=True) from None
            except (ConnectFailed, ConnectTimeout, Disconnected) as exc:
                if isinstance(exc, Disconnected) and exc.answered:
                    raise transport_error(exc) from None
                # Nothing was answered (a refused, reset or timed-out connection): safe to send again.
                logger.warning(
                    "upstream attempt failed model=%s attempt=%d error=%s",
                    self.spec.name,
                    attempt + 1,
                    type(exc).__name__,
                )
                if last:
                    raise transport_error(exc) from None
                await asyncio.sleep(wait)
                continue
            except HttpError as exc:
                raise transport_error(exc) from None
            if response.status == 200:
                content_type = response.headers.get("content-type", "")
                if stream and "text/event-stream" not in content_type:
                    response.close()
                    raise BackendUnavailable("The model endpoint did not stream its answer.")
                return response
            error_body = await read_error_body(response)
            logger.warning(
                "upstream answered model=%s attempt=%d status=%d",
                self.spec.name,
                attempt + 1,
                response.status,
            )
            if response.status in _RETRY_STATUSES and not last:
                await asyncio.sleep(max(wait, _retry_after(response, wait)))
                continue
            raise self._status_error(response.status, error_body, chat)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _status_error(self, status: int, body: object, chat: bool) -> ServiceError:
        return status_error(status, body, chat=chat, secrets=self._secrets, model=self.spec.name)

    def _payload(self, data: str, chat: bool) -> dict[str, Any]:
        try:
            payload = json.loads(data)
        except ValueError:
            raise BackendUnavailable("The model endpoint sent an unreadable answer.") from None
        if not isinstance(payload, dict):
            raise BackendUnavailable("The model endpoint sent an unreadable answer.")
        error = payload.get("error")
        if error is not None:  # an error event inside the stream
            status = error.get("code") if isinstance(error, dict) else None
            status = status if isinstance(status, int) and 400 <= status < 600 else 500
            raise self._status_error(status, payload, chat)
        return payload

    async def _events(self, response: Response) -> AsyncGenerator[str, None]:
        """The ``data`` of each server-sent event, with the upstream's failures as gateway errors."""
        data: list[str] = []
        async for line in self._lines(response):
            if not line:
                if data:
                    yield "\n".join(data)
                    data = []
                continue
            name, _, value = line.partition(":")
            if name == "data":
                data.append(value.removeprefix(" "))
        if data:
            yield "\n".join(data)

    async def _lines(self, response: Response) -> AsyncGenerator[str, None]:
        """The stream's lines as they arrive (every line a read brought, at once)."""
        pending = b""
        reads = response.pieces()
        try:
            while True:
                try:
                    piece = await anext(reads)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise UpstreamTimeout("The model endpoint stopped sending its answer.") from None
                except HttpError as exc:
                    logger.warning(
                        "upstream stream failed model=%s error=%s", self.spec.name, type(exc).__name__
                    )
                    raise BackendUnavailable("The model endpoint cut the answer off; retry.") from None
                *lines, pending = (pending + piece).split(b"\n")
                for line in lines:
                    yield line.removesuffix(b"\r").decode("utf-8", "replace")
        finally:
            await reads.aclose()
        if pending:
            yield pending.removesuffix(b"\r").decode("utf-8", "replace")


def _loads(raw: bytes) -> Any:
    """A whole answer's JSON: orjson's one call, or the standard parser's four for what orjson refuses
    (``NaN`` and ``Infinity``, which Python's own JSON writers emit)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _retry_after(response: Response, default: float) -> float:
    try:
        return min(float(response.headers.get("retry-after", default)), MAX_BACKOFF_S)
    except ValueError:
        return default
