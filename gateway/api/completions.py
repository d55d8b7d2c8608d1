"""POST /v1/completions (legacy text completions)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.api.deps import authenticate_with, get_services, parse_body
from gateway.api.direct_route import DirectRoute
from gateway.api.generation import Call, new_request_id, run_call
from gateway.api.openapi_bodies import json_body
from gateway.protocol.requests import CompletionRequest
from gateway.protocol.responses import CompletionFormatter
from gateway.streaming import StreamEncoder

router = APIRouter(route_class=DirectRoute)


@router.post("/v1/completions", openapi_extra=json_body(CompletionRequest))
async def create_completion(request: Request) -> Response:
    services = get_services(request)
    principal = await authenticate_with(request, services.keystore)
    body = await parse_body(request, CompletionRequest)
    if (problem := body.unsupported()) is not None:
        raise problem
    model = services.model_router.resolve(body.model)
    request_id = new_request_id("cmpl")
    formatter = CompletionFormatter(request_id, model.name)
    call = Call(
        endpoint="completions",
        principal=principal,
        model=model,
        prompt=body.to_prompt(),
        sampling=body.sampling(),
        stream=body.stream,
        service_tier=body.service_tier,
    )
    encoder = None
    if body.stream:  # a whole answer is formatted by ``formatter.completion`` alone
        encoder = StreamEncoder(
            preamble=None,
            delta=formatter.delta_chunk,
            usage=formatter.usage_chunk,
            include_usage=body.include_usage,
        )
    return await run_call(request, call, request_id, formatter.completion, encoder, services)
