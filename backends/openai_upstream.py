"""An OpenAI-compatible HTTP server as the engine: a vendor runtime (MindIE, a vendor's vLLM build, SGLang,
TGI) or a rented pool's endpoint, served behind the gateway like any other backend.

Every request is streamed from the upstream (``stream: true``, usage asked for with
``stream_options.include_usage`` and, where honoured, ``continuous_usage_stats``) and passed on chunk by
chunk. Usage is the upstream's own whenever it sends any; an upstream that sends none is counted here with
the model's tokenizer (the prompt rendered with its chat template as the gateway renders it, the
completion's text re-encoded) and the usage is marked ``estimated``.

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
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from backends.base import (
    ChatPrompt,
    ChoiceDelta,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    ModelSpec,
    Prompt,
    SamplingOptions,
    TextPrompt,
    TokenLogprob,
    TokenPrompt,
    TopLogprob,
    Usage,
)
from gateway.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    UpstreamTimeout,
)

logger = logging.getLogger(__name__)

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_BEFORE_ANSWER = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)
"""Failures of a request that got no answer at all (no status line): retried."""
_MAX_BACKOFF_S = 5.0
_MAX_ERROR_BODY = 64 * 1024
_MAX_MESSAGE = 2000
_CONTEXT_MESSAGE = re.compile(
    r"context length|context window|maximum context|max_model_len|prompt is too long|input is too long"
    r"|too many (input )?tokens",
    re.IGNORECASE,
)
_REQUEST_FIELDS = frozenset(
    {
        "messages",
        "prompt",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
    }
)


class OpenAIUpstreamOptions(BaseModel):
    """Engine options a catalog deployment sets for the ``openai_upstream`` backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(
        description="The upstream's OpenAI API root, e.g. http://10.0.0.5:8000/v1 (http:// or https://)."
    )
    model: str = Field(min_length=1, description="The model name the upstream serves (sent as `model`).")
    api_key_env: str | None = Field(
        default=None,
        pattern=_ENV_NAME,
        description="Name of the environment variable that holds the upstream's API key (never the key).",
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Longest wait to open a connection.")
    read_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Longest wait for the next bytes of an answer, the first token included.",
    )
    retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Extra attempts after a refused connection, 429 or 5xx, only before the first byte.",
    )
    retry_backoff_s: float = Field(
        default=0.2, ge=0, le=_MAX_BACKOFF_S, description="Wait before the first retry; doubled each time."
    )
    max_connections: int = Field(
        default=256,
        ge=1,
        description=(
            "Connections one replica opens to the upstream at most; more requests wait for a free one "
            "(up to read_timeout_s)."
        ),
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra HTTP headers for every call; not for secrets (the key comes from api_key_env).",
    )
    continuous_usage: bool = Field(
        default=True,
        description=(
            "Ask for usage on every chunk (stream_options.continuous_usage_stats, honoured by vLLM and "
            "SGLang); turn off for an upstream that rejects unknown fields."
        ),
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("base_url must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
        return value.rstrip("/")

    @field_validator("headers")
    @classmethod
    def _no_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        if any(name.lower() in ("authorization", "api-key", "x-api-key") for name in value):
            raise ValueError("credentials do not belong in the catalog: set api_key_env instead")
        return value


class _Misconfigured(BackendUnavailable):
    """The upstream answered, and the answer shows the deployment is set up wrong (key, URL or model)."""


# -- counting tokens where the upstream reports no usage ---------------------------------------------------


class TokenCounter:
    """Counts tokens with the model's own tokenizer, as the upstream engine would.

    Chat prompts are rendered with the model's chat template the way the gateway renders them for admission
    (``gateway.token_count``) and counted without added special tokens; text prompts are counted with
    them. Without a ``tokenizer.json`` (a model id, or a folder without one) it counts UTF-8 bytes, an
    upper bound for byte-level vocabularies.
    """

    def __init__(
        self,
        tokenizer: Any | None = None,
        render_chat: Callable[[list[dict[str, str]]], str] | None = None,
        fallback: Callable[[Prompt], int] | None = None,
    ) -> None:
        self._tokenizer = tokenizer
        self._render_chat = render_chat
        self._fallback = fallback

    @classmethod
    def load(cls, weights_path: str) -> TokenCounter:
        from gateway.token_count import load_prompt_counter

        prompts = load_prompt_counter(weights_path)
        file = Path(weights_path) / "tokenizer.json"
        if not file.is_file():
            logger.warning(
                "no tokenizer.json in %s: usage an upstream does not report is estimated in bytes",
                weights_path,
            )
            return cls(fallback=prompts.prompt_tokens)
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(file)), prompts.render_chat, prompts.prompt_tokens)

    def count(self, text: str, special_tokens: bool = False) -> int:
        if self._tokenizer is None:
            return len(text.encode("utf-8"))
        return len(self._tokenizer.encode(text, add_special_tokens=special_tokens).ids)

    def prompt_tokens(self, prompt: Prompt) -> int:
        if isinstance(prompt, TokenPrompt):
            return len(prompt.token_ids)
        if self._tokenizer is not None:
            if isinstance(prompt, TextPrompt):
                return self.count(prompt.text, special_tokens=True)
            if self._render_chat is not None:
                messages = [{"role": m.role, "content": m.content} for m in prompt.messages]
                with contextlib.suppress(Exception):  # a template this renderer cannot run: the bound below
                    return self.count(self._render_chat(messages))
        if self._fallback is not None:
            return self._fallback(prompt)
        text = prompt.text if isinstance(prompt, TextPrompt) else "".join(m.content for m in prompt.messages)
        return self.count(text)

    def settle(self, text: str, keep: int) -> tuple[int, int, int]:
        """Tokens in ``text``, and how much of it (characters, tokens) no later text can re-tokenize:
        everything but the last ``keep`` tokens."""
        if self._tokenizer is None:
            size = self.count(text)
            return size, len(text), size
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        total = len(encoding.ids)
        if total <= 2 * keep:
            return total, 0, 0
        chars = int(encoding.offsets[total - keep][0])
        return (total, chars, total - keep) if chars > 0 else (total, 0, 0)


@dataclass
class _CompletionText:
    """One choice's text so far, counted incrementally: a settled prefix plus a re-encoded tail."""

    parts: list[str] = field(default_factory=list)
    settled_chars: int = 0
    settled_tokens: int = 0

    KEEP = 8  # tokens at the end that may still merge with text that follows

    def text(self) -> str:
        return "".join(self.parts)

    def estimate(self, counter: TokenCounter) -> int:
        text = self.text()
        total, chars, tokens = counter.settle(text[self.settled_chars :], self.KEEP)
        result = self.settled_tokens + total
        self.settled_chars += chars
        self.settled_tokens += tokens
        return result


# -- one answer ------------------------------------------------------------------------------------------


@dataclass
class _Answer:
    """What one streamed answer has delivered so far, and the usage to put on its next chunk."""

    prompt: Prompt
    n: int
    counter: TokenCounter
    texts: dict[int, _CompletionText] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    exact: Usage | None = None
    exact_is_current: bool = False
    prompt_estimate: int | None = None
    sent_usage: Usage | None = None

    def take(self, payload: dict[str, Any], chat: bool) -> list[ChoiceDelta]:
        """The deltas of one upstream chunk (choices already finished are ignored from then on)."""
        deltas: list[ChoiceDelta] = []
        choices = payload.get("choices") or []
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = int(choice.get("index") or 0)
            if index in self.finished:
                continue
            if chat:
                delta = choice.get("delta") or {}
                text = delta.get("content") if isinstance(delta, dict) else None
                logprobs = _chat_logprobs(choice.get("logprobs"))
            else:
                text = choice.get("text")
                logprobs = _completion_logprobs(choice.get("logprobs"))
            text = text if isinstance(text, str) else ""
            finish = _finish_reason(choice.get("finish_reason"))
            if not text and finish is None and not logprobs:
                continue
            self.texts.setdefault(index, _CompletionText()).parts.append(text)
            if finish is not None:
                self.finished.add(index)
            deltas.append(ChoiceDelta(index=index, text=text, finish_reason=finish, logprobs=logprobs))
        usage = _usage(payload.get("usage"))
        # vLLM's per-chunk usage with n > 1 counts only that chunk's choice; the summary (no choices) sums.
        if usage is not None and (self.n == 1 or not choices):
            self.exact, self.exact_is_current = usage, True
        elif deltas:
            self.exact_is_current = False
        return deltas

    def usage(self, final: bool = False) -> Usage:
        """Cumulative usage: the upstream's when its latest chunk carried it, else estimated here."""
        if self.exact is not None and self.exact_is_current:
            return self.exact
        if self.prompt_estimate is None:
            self.prompt_estimate = self.counter.prompt_tokens(self.prompt)
        if final:
            completion = sum(self.counter.count(t.text()) for t in self.texts.values())
        else:
            completion = sum(t.estimate(self.counter) for t in self.texts.values())
        if self.exact is not None:  # counts the upstream reported earlier stay the floor
            prompt, cached = self.exact.prompt_tokens, self.exact.cached_tokens
            completion = max(completion, self.exact.completion_tokens)
        else:
            prompt, cached = self.prompt_estimate, 0
        return Usage(prompt, completion, cached, estimated=True)

    def complete(self) -> bool:
        return all(i in self.finished for i in range(self.n)) and self.finished >= set(self.texts)


def _finish_reason(reason: object) -> FinishReason | None:
    if reason is None:
        return None
    if reason in ("stop", "length", "abort"):
        return reason  # type: ignore[return-value]
    return "stop"  # eos, tool_calls, content_filter, ...: the answer is over


def _usage(data: object) -> Usage | None:
    if not isinstance(data, dict):
        return None
    try:
        prompt = int(data["prompt_tokens"])
        completion = int(data.get("completion_tokens") or 0)
        details = data.get("prompt_tokens_details")
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    except (KeyError, TypeError, ValueError):
        return None
    return Usage(prompt, completion, cached)


def _logprob(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("-inf")


def _chat_logprobs(data: object) -> list[TokenLogprob] | None:
    content = data.get("content") if isinstance(data, dict) else None
    if not isinstance(content, list):
        return None
    result = []
    for entry in content:
        if not isinstance(entry, dict):
            continue
        top = tuple(
            TopLogprob(str(alt.get("token", "")), _logprob(alt.get("logprob")))
            for alt in entry.get("top_logprobs") or []
            if isinstance(alt, dict)
        )
        result.append(TokenLogprob(str(entry.get("token", "")), _logprob(entry.get("logprob")), top))
    return result


def _completion_logprobs(data: object) -> list[TokenLogprob] | None:
    if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
        return None
    tokens: list[Any] = data["tokens"]
    values: list[Any] = data.get("token_logprobs") or []
    tops: list[Any] = data.get("top_logprobs") or []
    result = []
    for i, token in enumerate(tokens):
        alternatives = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        top = tuple(TopLogprob(str(t), _logprob(lp)) for t, lp in alternatives.items())
        result.append(TokenLogprob(str(token), _logprob(values[i] if i < len(values) else None), top))
    return result


# -- upstream errors ------------------------------------------------------------------------------------


def _error_fields(body: object) -> tuple[str, str | None, str | None]:
    """(message, code, param) from an error body: OpenAI's, vLLM's, TGI's or FastAPI's shape, or text."""
    if isinstance(body, (bytes, str)):
        raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            body = json.loads(raw)
        except ValueError:
            return raw.strip(), None, None
    if not isinstance(body, dict):
        return str(body), None, None
    error = body.get("error", body)
    if isinstance(error, str):  # TGI: {"error": "...", "error_type": "validation"}
        return error, None, None
    if not isinstance(error, dict):
        return str(error), None, None
    message = error.get("message", error.get("detail", ""))
    if isinstance(message, list):  # FastAPI validation: [{"loc": [...], "msg": "..."}]
        message = "; ".join(
            str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in message
        )
    code, param = error.get("code"), error.get("param")
    return str(message), code if isinstance(code, str) else None, param if isinstance(param, str) else None


@dataclass(frozen=True)
class _Secrets:
    """What an error message must never show a client: the upstream's address and key."""

    values: tuple[str, ...]

    def scrub(self, message: str) -> str:
        for value in self.values:
            if value:
                message = message.replace(value, "[upstream]")
        return message[:_MAX_MESSAGE]


class OpenAIUpstreamBackend:
    """One upstream OpenAI-compatible endpoint serving one model."""

    Options = OpenAIUpstreamOptions

    def __init__(self, spec: ModelSpec, options: OpenAIUpstreamOptions) -> None:
        self.spec = spec
        self.options = options
        self._client: httpx.AsyncClient | None = None
        self._counter = TokenCounter()
        self._secrets = _Secrets((options.base_url, httpx.URL(options.base_url).netloc.decode()))
        self._closing: asyncio.Task[None] | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> OpenAIUpstreamBackend:
        return cls(spec, OpenAIUpstreamOptions.model_validate(spec.engine))

    async def start(self) -> None:
        options = self.options
        headers = {"Accept": "text/event-stream, application/json", **options.headers}
        if options.api_key_env is not None:
            key = os.environ.get(options.api_key_env)
            if not key:
                raise RuntimeError(
                    f"model {self.spec.name}: environment variable {options.api_key_env} (api_key_env) is "
                    "not set in the gateway's environment"
                )
            headers["Authorization"] = f"Bearer {key}"
            self._secrets = _Secrets((*self._secrets.values, key))
        self._counter = await asyncio.to_thread(TokenCounter.load, self.spec.weights_path)
        self._client = httpx.AsyncClient(
            base_url=options.base_url,
            headers=headers,
            timeout=httpx.Timeout(
                connect=options.connect_timeout_s,
                read=options.read_timeout_s,
                write=options.read_timeout_s,
                pool=options.read_timeout_s,
            ),
            limits=httpx.Limits(
                max_connections=options.max_connections, max_keepalive_connections=options.max_connections
            ),
            trust_env=False,  # no proxy from the environment between a replica and its upstream
        )
        try:
            await self.check_health()
        except _Misconfigured:
            await self.aclose()
            raise
        except BackendUnavailable as exc:  # down for now: requests answer 503 until it is back
            logger.warning("upstream of model %s not reachable at start: %s", self.spec.name, exc.message)

    async def check_health(self) -> None:
        client = self._require_client()
        try:
            response = await client.get("/models", timeout=self.options.connect_timeout_s)
        except httpx.TimeoutException:
            raise BackendUnavailable("The model endpoint did not answer its health check in time.") from None
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"The model endpoint is unreachable ({type(exc).__name__}).") from None
        if response.status_code in (401, 403, 404):
            raise _Misconfigured(
                f"The model endpoint answered GET /models with {response.status_code}: check base_url and "
                "api_key_env."
            )
        if response.status_code != 200:
            raise BackendUnavailable(f"The model endpoint answered GET /models with {response.status_code}.")
        served = _model_ids(response)
        if served is not None and self.options.model not in served:
            raise _Misconfigured(
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
        self._closing = loop.create_task(client.aclose())

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _require_client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise BackendUnavailable("The model's upstream client is not started.")
        return self._client

    # -- request path ---------------------------------------------------------------------------------

    def _body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        prompt, sampling = request.prompt, request.sampling
        stream_options: dict[str, bool] = {"include_usage": True}
        if self.options.continuous_usage:
            stream_options["continuous_usage_stats"] = True
        body: dict[str, Any] = {"model": self.options.model, "stream": True, "stream_options": stream_options}
        if isinstance(prompt, ChatPrompt):
            path = "/chat/completions"
            body["messages"] = [{"role": m.role, "content": m.content} for m in prompt.messages]
            if sampling.logprobs is not None:
                body["logprobs"] = True
                body["top_logprobs"] = sampling.logprobs
        else:
            path = "/completions"
            body["prompt"] = prompt.text if isinstance(prompt, TextPrompt) else list(prompt.token_ids)
            if sampling.logprobs is not None:
                body["logprobs"] = sampling.logprobs
        body.update(_sampling_fields(sampling))
        return path, body

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        client = self._require_client()
        path, body = self._body(request)
        chat = isinstance(request.prompt, ChatPrompt)
        answer = _Answer(request.prompt, request.sampling.n, self._counter)
        response = await self._open(client, path, body, request.request_id, chat)
        done = False
        try:
            async with contextlib.aclosing(self._events(response)) as events:
                async for data in events:
                    if data == "[DONE]":
                        done = True
                        break
                    deltas = answer.take(self._payload(data, chat), chat)
                    if deltas:
                        usage = answer.usage()
                        answer.sent_usage = usage
                        yield GenerationChunk(choices=deltas, usage=usage)
        finally:
            await response.aclose()  # also when the consumer stops: the upstream sees the request go away
        if not answer.complete():
            reason = "ended the answer early" if done else "cut the answer off"
            logger.warning("upstream %s model=%s request_id=%s", reason, self.spec.name, request.request_id)
            raise BackendUnavailable(f"The model endpoint {reason}; retry.")
        final = answer.usage(final=True)
        if final != answer.sent_usage:
            yield GenerationChunk(choices=[], usage=final)

    async def _open(
        self, client: httpx.AsyncClient, path: str, body: dict[str, Any], request_id: str, chat: bool
    ) -> httpx.Response:
        """Send the request; retry refused connections, 429 and 5xx, never once an answer has begun."""
        attempts = self.options.retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            wait = min(self.options.retry_backoff_s * 2**attempt, _MAX_BACKOFF_S)
            http_request = client.build_request("POST", path, json=body, headers={"X-Request-Id": request_id})
            try:
                response = await client.send(http_request, stream=True)
            except _BEFORE_ANSWER as exc:
                # Nothing was answered yet (a refused, reset or stale connection): safe to send again.
                logger.warning(
                    "upstream attempt failed model=%s attempt=%d error=%s",
                    self.spec.name,
                    attempt + 1,
                    type(exc).__name__,
                )
                if last:
                    raise self._transport_error(exc) from None
                await asyncio.sleep(wait)
                continue
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from None
            if response.status_code == 200:
                content_type = response.headers.get("content-type", "")
                if "text/event-stream" not in content_type:
                    await response.aclose()
                    raise BackendUnavailable("The model endpoint did not stream its answer.")
                return response
            error_body = await _read_error_body(response)
            logger.warning(
                "upstream answered model=%s attempt=%d status=%d",
                self.spec.name,
                attempt + 1,
                response.status_code,
            )
            if response.status_code in _RETRY_STATUSES and not last:
                await asyncio.sleep(max(wait, _retry_after(response, wait)))
                continue
            raise self._status_error(response.status_code, error_body, chat)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _transport_error(self, exc: httpx.HTTPError) -> GatewayError:
        if isinstance(exc, httpx.PoolTimeout):
            return BackendUnavailable("Too many requests are waiting for this model's endpoint; retry.")
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeout("The model endpoint did not answer in time.")
        return BackendUnavailable("The model endpoint is unreachable; retry.")

    def _status_error(self, status: int, body: object, chat: bool) -> GatewayError:
        message, code, param = _error_fields(body)
        message = self._secrets.scrub(message)
        if status in (400, 413, 422):
            text = message or "The model endpoint rejected the request."
            if code == "context_length_exceeded" or _CONTEXT_MESSAGE.search(text):
                return ContextLengthExceeded(text, param="messages" if chat else "prompt")
            return InvalidRequest(text, param=param if param in _REQUEST_FIELDS else None)
        if status in (408, 504):
            return UpstreamTimeout("The model endpoint did not answer in time.")
        if status in (401, 403, 404):
            logger.error(
                "upstream refused the gateway model=%s status=%d (check base_url, model and api_key_env): %s",
                self.spec.name,
                status,
                message,
            )
            return BackendUnavailable("This model is unavailable: its endpoint is misconfigured.")
        if status == 429:
            return BackendUnavailable("This model's endpoint is overloaded; retry.")
        return BackendUnavailable("This model's endpoint failed; retry.")

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

    async def _events(self, response: httpx.Response) -> AsyncGenerator[str, None]:
        """The ``data`` of each server-sent event, with the upstream's failures as gateway errors."""
        lines = response.aiter_lines()
        data: list[str] = []
        while True:
            try:
                line = await anext(lines)
            except StopAsyncIteration:
                break
            except httpx.TimeoutException:
                raise UpstreamTimeout("The model endpoint stopped sending its answer.") from None
            except httpx.HTTPError as exc:
                logger.warning("upstream stream failed model=%s error=%s", self.spec.name, type(exc).__name__)
                raise BackendUnavailable("The model endpoint cut the answer off; retry.") from None
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


def _sampling_fields(sampling: SamplingOptions) -> dict[str, Any]:
    """The request fields for the options that differ from the upstream's defaults."""
    fields: dict[str, Any] = {}
    if sampling.max_tokens is not None:
        fields["max_tokens"] = sampling.max_tokens
    if sampling.temperature is not None:
        fields["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        fields["top_p"] = sampling.top_p
    if sampling.n != 1:
        fields["n"] = sampling.n
    if sampling.stop:
        fields["stop"] = list(sampling.stop)
    if sampling.seed is not None:
        fields["seed"] = sampling.seed
    if sampling.presence_penalty:
        fields["presence_penalty"] = sampling.presence_penalty
    if sampling.frequency_penalty:
        fields["frequency_penalty"] = sampling.frequency_penalty
    if sampling.ignore_eos:
        fields["ignore_eos"] = True
    return fields


async def _read_error_body(response: httpx.Response) -> bytes:
    body = b""
    try:
        async for part in response.aiter_bytes():
            body += part
            if len(body) >= _MAX_ERROR_BODY:
                break
    except httpx.HTTPError:
        pass  # the status is what matters; the message is a courtesy
    finally:
        await response.aclose()
    return body[:_MAX_ERROR_BODY]


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return min(float(response.headers.get("retry-after", default)), _MAX_BACKOFF_S)
    except ValueError:
        return default


def _model_ids(response: httpx.Response) -> list[str] | None:
    """The model ids of an OpenAI model list, or None when the answer is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]
