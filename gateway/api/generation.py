"""The request path shared by chat and text completions, embeddings and rerank: admission → a slot of the
model → replica → response → metering."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from backends.base import (
    EmbeddingRequest,
    EngineRequest,
    GenerationChunk,
    GenerationRequest,
    PoolingRequest,
    Prompt,
    SamplingOptions,
    Task,
    TextPrompt,
    close_stream,
)
from backends.tools import StructuredOutput, ToolPlan
from gateway.api.deps import Services, get_services, header
from gateway.api.disconnect import unless_gone
from gateway.api.dispatch import Failed, dispatch
from gateway.billing.admission import Admission
from gateway.billing.metering import Meter, Progress
from gateway.catalog.policy import ServiceTier
from gateway.catalog.routing import RoutedModel
from gateway.errors import ClientGone, InvalidRequest, Overloaded, PermissionDenied, ServiceError
from gateway.placement.state import PlacementRequest
from gateway.streaming import StreamEncoder, sse_stream
from gateway.tenancy.keystore import Principal

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
OVERHEAD_HEADER = "x-maas-gateway-overhead-ms"
_OVERHEAD_HEADER_RAW = OVERHEAD_HEADER.encode("latin-1")
MAX_IDEMPOTENCY_KEY = 255


ENDPOINTS: dict[Task, str] = {
    "chat": "/v1/chat/completions and /v1/completions",
    "embed": "/v1/embeddings",
    "rerank": "/v1/rerank and /v1/score",
}
TASK_NAMES: dict[Task, str] = {"chat": "chat", "embed": "embedding", "rerank": "rerank"}


@dataclass(frozen=True)
class Call:
    """One validated call, ready to send to a model: a generation (``prompt``, ``sampling``) or a
    pooling request (``pooling``: embeddings or rerank, always answered whole)."""

    endpoint: str
    principal: Principal
    model: RoutedModel
    prompt: Prompt = TextPrompt("")
    sampling: SamplingOptions = SamplingOptions()
    stream: bool = False
    pooling: PoolingRequest | None = None
    structured: StructuredOutput | None = None
    tools: ToolPlan | None = None
    service_tier: ServiceTier | None = None

    @property
    def ttft_slo_s(self) -> float | None:
        """The time to first token this call's service tier promises (None: the model promises none)."""
        return self.model.routing.tier_slo_s(self.service_tier)

    @property
    def task(self) -> Task:
        if self.pooling is None:
            return "chat"
        return "embed" if isinstance(self.pooling, EmbeddingRequest) else "rerank"

    @cached_property
    def prompt_tokens(self) -> int:
        """The gateway's estimate of the prompt tokens, for admission and placement (rendered and
        counted once per call)."""
        counter = self.model.prompt_counter
        if self.pooling is None:
            return counter.prompt_tokens(self.prompt)
        if isinstance(self.pooling, EmbeddingRequest):
            return sum(counter.prompt_tokens(item) for item in self.pooling.inputs)
        query = counter.prompt_tokens(TextPrompt(self.pooling.query))
        return sum(query + counter.prompt_tokens(TextPrompt(d)) for d in self.pooling.documents)


def check_task(call: Call) -> None:
    """A model serves the endpoints of its task only: anything else is a 400 naming its task."""
    model, wanted = call.model, call.task
    if model.task != wanted:
        raise InvalidRequest(
            f"The model `{model.name}` is a {TASK_NAMES[model.task]} model (task: {model.task}); it serves "
            f"{ENDPOINTS[model.task]}, not this endpoint. Use a {TASK_NAMES[wanted]} model here.",
            param="model",
            code="model_task_mismatch",
        )


def served_tier(model: RoutedModel, tier: ServiceTier | None) -> str | None:
    """The tier a request that named ``tier`` is served in (``auto`` is ``default``), or a 400 when the model
    does not offer it; None when the request named none."""
    if tier is None:
        return None
    if tier in ("auto", "default"):
        return "default"
    if tier not in model.routing.service_tiers:
        offered = ", ".join(["auto", "default", *sorted(model.routing.service_tiers)])
        raise InvalidRequest(
            f"The model `{model.name}` does not offer service_tier '{tier}'; it offers: {offered}.",
            param="service_tier",
            code="unsupported_service_tier",
        )
    return tier


class JsonAnswer(Response):
    """A whole answer, encoded by orjson: 16 embeddings (6,144 floats) in 0.15 ms instead of json's 5 ms.
    FastAPI's ``ORJSONResponse`` did the same, but is deprecated: every one built issued a warning."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


class AccountAfter(BackgroundTask):
    """A response's background that counts its meter's record once the answer is out, on the event loop.
    Starlette runs a plain function's background in a worker thread (a thread hop, and a contender for
    the interpreter's lock, per request), and ``BackgroundTask`` inspects its function on every request
    to tell which kind it is."""

    def __init__(self, meter: Meter) -> None:  # BackgroundTask's own fields are never read
        self.meter = meter

    async def __call__(self) -> None:
        self.meter.account()


def new_request_id(prefix: str) -> str:
    """``prefix-`` and 32 random hex digits (128 bits, as a UUID4's hex; two C calls, not ``uuid``'s
    Python)."""
    return f"{prefix}-{os.urandom(16).hex()}"


def idempotency_key(request: Request) -> str | None:
    key = header(request, b"idempotency-key")
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters.")
    return key


def request_started(request: Request) -> float:
    """When the gateway received the request (set by the timing middleware)."""
    started: float = request.scope.get("state", {}).get("started") or time.perf_counter()
    return started  # read from the scope: ``request.state`` would make a ``State`` object over it


def placement_request(call: Call) -> PlacementRequest:
    """What placement weighs of ``call``: its tokens (prices) and the pools its caller may use."""
    prompt = call.prompt_tokens if len(call.model.routes) > 1 else 0
    output = 0 if call.pooling is not None else (call.sampling.max_tokens or 256) * call.sampling.n
    return PlacementRequest(prompt, output, call.ttft_slo_s, allowed_pools=call.principal.pools)


async def admit(call: Call, admission: Admission, meter: Meter) -> None:
    """Reserve the call's estimate against its key's and tenant's limits, or refuse it (429)."""
    if not admission.needed(call.principal):
        return
    prompt_tokens = call.prompt_tokens
    if call.pooling is None:
        estimate = admission.estimate(call.model, prompt_tokens, call.sampling.max_tokens, call.sampling.n)
    else:
        estimate = admission.estimate(call.model, prompt_tokens, 0, 1)
    try:
        meter.reservation = await admission.admit(call.principal, estimate)
    except ServiceError as refusal:
        await meter.settle(Progress(), "rejected", type(refusal).__name__)
        raise


async def run_call(
    request: Request,
    call: Call,
    request_id: str,
    whole_body: Callable[[GenerationChunk], dict[str, Any]],
    encoder: StreamEncoder | None = None,
    services: Services | None = None,
) -> Response:
    started = request_started(request)
    services = services or get_services(request)
    metrics = services.metrics
    principal = call.principal
    check_task(call)
    served_tier(call.model, call.service_tier)
    if principal.models is not None and call.model.name not in principal.models:
        raise PermissionDenied(f"This API key may not use the model `{call.model.name}`.", param="model")
    admission = services.admission
    utilization = services.utilization
    meter = Meter(
        ledger=services.ledger,
        metrics=metrics,
        request_id=request_id,
        idempotency_key=idempotency_key(request),
        principal=call.principal,
        model=call.model,
        endpoint=call.endpoint,
        stream=call.stream,
        started=started,
        admission=admission,
        utilization=utilization,
        alone=services.drain.alone,
        log=services.usage_log,
    )
    await admit(call, admission, meter)
    generation: EngineRequest = call.pooling or GenerationRequest(
        request_id=request_id,
        prompt=call.prompt,
        sampling=call.sampling,
        whole=not call.stream,
        structured=call.structured,
        tools=call.tools,
    )
    waiting = time.perf_counter()
    if utilization is not None:
        utilization.waiting(call.model.name, +1)
    try:
        answer = await unless_gone(
            request.receive,
            dispatch(
                call.model,
                generation,
                principal.tenant,
                placement_request(call),
                services.model_gates,
                services.placement,
            ),
        )
    except ClientGone:  # left the queue, freed its slot, aborted in the engine: nothing was sent
        meter.settle_nowait(Progress(), "cancelled", ClientGone.__name__)
        raise
    except Failed as failed:
        meter.placed(failed.route, failed.attempts)
        error = failed.error
        if isinstance(error, Overloaded):
            # Nothing was generated or billed: the refusal's record is queued, not waited for, so a
            # flood is refused at the speed of the front rather than of the ledger's commits.
            meter.settle_nowait(Progress(), "rejected", type(error).__name__)
        else:
            await meter.settle(Progress(), "error", type(error).__name__)
        raise error from failed
    except ServiceError as refused:  # placement's own refusal: no pool this caller may use
        await meter.settle(Progress(), "rejected", type(refused).__name__)
        raise
    finally:
        if utilization is not None:
            utilization.waiting(call.model.name, -1)
    meter.placed(answer.route, answer.attempts)
    first, chunks = answer.first, answer.chunks
    backend_wait = time.perf_counter() - waiting

    if call.stream:
        assert encoder is not None, "a streamed call needs its encoder"
        response: Response = StreamingResponse(
            sse_stream(first, chunks, encoder, meter), media_type="text/event-stream", headers=SSE_HEADERS
        )
    else:
        await close_stream(chunks)  # a whole answer is one chunk: free its slot now
        whole = first or GenerationChunk()
        progress = Progress()
        progress.observe(whole)
        progress.first_token_at = None  # a whole answer arrives at once; its TTFT is unknown here
        # The ledger commits while the body is encoded; metrics and the usage line wait until it is sent.
        settled = meter.settling(progress, "ok", account_later=True)
        try:
            try:
                response = JsonAnswer(whole_body(whole), background=AccountAfter(meter))
            finally:
                await settled  # the answer goes out only once its record is durable
        except BaseException:
            meter.account()  # no answer goes out, so its background never runs: count the record now
            raise
    # The backend's own time, measured where it runs; the hop to a replica counts as gateway overhead.
    engine = first.engine_seconds if first is not None and first.engine_seconds is not None else backend_wait
    overhead = time.perf_counter() - started - min(engine, backend_wait)
    metrics.overhead.labels(call.endpoint).observe(overhead)
    # Appended as it goes on the wire: ``response.headers[...] = ...`` wraps and rescans them all, in Python.
    response.raw_headers.append((_OVERHEAD_HEADER_RAW, b"%.3f" % (overhead * 1000)))
    if meter.reservation is not None:
        response.headers.update(meter.reservation.headers)
    return response
