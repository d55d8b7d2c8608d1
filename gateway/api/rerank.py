"""POST /v1/rerank (the shape Cohere and Jina use) and POST /v1/score (vLLM's, one query) for catalog models
with ``task: rerank``."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from gateway.api.deps import authenticate, get_model_router, parse_body
from gateway.api.direct_route import DirectRoute
from gateway.api.generation import Call, new_request_id, run_call
from gateway.api.openapi_bodies import json_body
from gateway.protocol.pooling import RerankBody, ScoreBody, rerank_body, score_body

router = APIRouter(route_class=DirectRoute)


@router.post("/v1/rerank", openapi_extra=json_body(RerankBody))
async def create_rerank(request: Request) -> Response:
    principal = await authenticate(request)
    body = await parse_body(request, RerankBody)
    model = get_model_router(request).resolve(body.model)
    request_id = new_request_id("rerank")
    call = Call(endpoint="rerank", principal=principal, model=model, pooling=body.to_backend(request_id))
    return await run_call(
        request, call, request_id, lambda chunk: rerank_body(chunk, request_id, model.name, body)
    )


@router.post("/v1/score", openapi_extra=json_body(ScoreBody))
async def create_score(request: Request) -> Response:
    principal = await authenticate(request)
    body = await parse_body(request, ScoreBody)
    model = get_model_router(request).resolve(body.model)
    request_id = new_request_id("score")
    call = Call(endpoint="score", principal=principal, model=model, pooling=body.to_backend(request_id))
    created = int(time.time())
    return await run_call(
        request, call, request_id, lambda chunk: score_body(chunk, request_id, model.name, created)
    )
