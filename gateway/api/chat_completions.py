"""POST /v1/chat/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.api.deps import Authenticated, get_model_router, parse_body
from gateway.api.generation import Call, new_request_id, run_call
from gateway.api.openapi_bodies import json_body
from gateway.protocol.requests import ChatCompletionRequest
from gateway.protocol.responses import ChatFormatter
from gateway.streaming import StreamEncoder

router = APIRouter()


@router.post("/v1/chat/completions", openapi_extra=json_body(ChatCompletionRequest))
async def create_chat_completion(request: Request, principal: Authenticated) -> Response:
    body = await parse_body(request, ChatCompletionRequest)
    if (problem := body.unsupported()) is not None:
        raise problem
    model = get_model_router(request).resolve(body.model)
    request_id = new_request_id("chatcmpl")
    formatter = ChatFormatter(request_id, model.name, body.n, reasoning=model.reasoning is not None)
    call = Call(
        endpoint="chat.completions",
        principal=principal,
        model=model,
        prompt=body.prompt(),
        sampling=body.sampling(),
        stream=body.stream,
    )
    encoder = StreamEncoder(
        preamble=formatter.role_chunk(),
        delta=formatter.delta_chunk,
        usage=formatter.usage_chunk,
        include_usage=body.include_usage,
    )
    return await run_call(request, call, request_id, formatter.completion, encoder)
