"""POST /v1/chat/completions."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request, Response

from backends.tools import StructuredOutput, ToolPlan
from gateway.api.deps import authenticate_with, get_services, parse_body
from gateway.api.direct_route import DirectRoute
from gateway.api.generation import Call, new_request_id, run_call, served_tier
from gateway.api.openapi_bodies import json_body
from gateway.catalog.routing import RoutedModel
from gateway.errors import InvalidRequest
from gateway.protocol.requests import ChatCompletionRequest
from gateway.protocol.responses import ChatFormatter
from gateway.streaming import StreamEncoder

router = APIRouter(route_class=DirectRoute)


def with_tool_parser(
    plan: ToolPlan | None, structured: StructuredOutput | None, model: RoutedModel
) -> ToolPlan | None:
    """The plan with the model's tool parser, or a 400 when the model lacks what the request needs:
    ``auto`` needs a deployment that reads the model's calls; ``required``, named choices and response
    formats need one that enforces them (every family has both on a vLLM deployment). Dispatch then
    places the request on such deployments alone (``Route.serves``)."""
    needs_constraints = structured is not None or (plan is not None and plan.forced)
    if needs_constraints and not model.constrained_decoding:
        raise InvalidRequest(
            f"The model `{model.name}` is not served by a backend that enforces tools or response_format "
            "(see its capabilities in /v1/models).",
            param="response_format" if structured is not None else "tools",
        )
    if plan is None:
        return None
    if plan.choice == "auto" and not model.tool_choice_auto:
        raise InvalidRequest(
            f"The model `{model.name}` has no tool-call format the gateway can read, so tool_choice 'auto' "
            "is not supported for it; use tool_choice 'required' or name a function.",
            param="tool_choice",
        )
    return replace(plan, parser=model.tool_parser)


@router.post("/v1/chat/completions", openapi_extra=json_body(ChatCompletionRequest))
async def create_chat_completion(request: Request) -> Response:
    services = get_services(request)
    principal = await authenticate_with(request, services.keystore)
    body = await parse_body(request, ChatCompletionRequest)
    if (problem := body.unsupported()) is not None:
        raise problem
    tools = body.tool_plan()
    structured = body.structured()
    model = services.model_router.resolve(body.model)
    tools = with_tool_parser(tools, structured, model)
    request_id = new_request_id("chatcmpl")
    tier = served_tier(model, body.service_tier)
    formatter = ChatFormatter(
        request_id, model.name, body.n, reasoning=model.reasoning is not None, service_tier=tier
    )
    call = Call(
        endpoint="chat.completions",
        principal=principal,
        model=model,
        prompt=body.prompt(tools),
        sampling=body.sampling(),
        stream=body.stream,
        structured=structured,
        tools=tools,
        service_tier=body.service_tier,
    )
    encoder = None
    if body.stream:  # a whole answer is formatted by ``formatter.completion`` alone
        encoder = StreamEncoder(
            preamble=formatter.role_chunk(),
            delta=formatter.delta_chunk,
            usage=formatter.usage_chunk,
            include_usage=body.include_usage,
        )
    return await run_call(request, call, request_id, formatter.completion, encoder, services)
