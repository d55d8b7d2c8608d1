"""POST /v1/embeddings (OpenAI format) for catalog models with ``task: embed``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.api.deps import authenticate, get_model_router, parse_body
from gateway.api.direct_route import DirectRoute
from gateway.api.generation import Call, new_request_id, run_call
from gateway.api.openapi_bodies import json_body
from gateway.protocol.pooling import EmbeddingBody, embeddings_body

router = APIRouter(route_class=DirectRoute)


@router.post("/v1/embeddings", openapi_extra=json_body(EmbeddingBody))
async def create_embeddings(request: Request) -> Response:
    principal = await authenticate(request)
    body = await parse_body(request, EmbeddingBody)
    model = get_model_router(request).resolve(body.model)
    request_id = new_request_id("embd")
    call = Call(endpoint="embeddings", principal=principal, model=model, pooling=body.to_backend(request_id))
    return await run_call(
        request, call, request_id, lambda chunk: embeddings_body(chunk, model.name, body.encoding_format)
    )
