"""The request path shared by chat and text completions: route → replica → response → metering."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse

from backends.base import GenerationChunk, GenerationRequest, Prompt, SamplingOptions, Usage
from gateway.errors import as_gateway_error
from gateway.keystore import Principal
from gateway.metering import UsageLog, UsageRecord
from gateway.routing import RoutedModel
from gateway.streaming import StreamEncoder, first_chunk, sse_stream

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class Call:
    """One validated generation call, ready to send to a model."""

    endpoint: str
    principal: Principal
    model: RoutedModel
    prompt: Prompt
    sampling: SamplingOptions
    stream: bool


def new_request_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


async def run_call(
    call: Call,
    request_id: str,
    usage_log: UsageLog,
    whole_body: Callable[[GenerationChunk], dict[str, Any]],
    encoder: StreamEncoder,
) -> Response:
    started = time.monotonic()

    def meter(usage: Usage | None, outcome: str) -> None:
        usage_log.record(
            UsageRecord(
                request_id=request_id,
                tenant=call.principal.tenant,
                key_id=call.principal.key_id,
                model=call.model.name,
                endpoint=call.endpoint,
                stream=call.stream,
                outcome=outcome,
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                duration_s=time.monotonic() - started,
            )
        )

    generation = GenerationRequest(request_id=request_id, prompt=call.prompt, sampling=call.sampling)
    chunks = call.model.client.generate(generation, whole=not call.stream)
    try:
        first = await first_chunk(chunks)
    except Exception as exc:
        error = as_gateway_error(exc)
        meter(None, f"error:{type(error).__name__}")
        raise error from exc
    if call.stream:
        return StreamingResponse(
            sse_stream(first, chunks, encoder, meter),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    whole = first or GenerationChunk()
    meter(whole.usage, "ok")
    return JSONResponse(whole_body(whole))
