"""GET /v1/models and GET /v1/models/{model}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.api.deps import Authenticated, get_model_router
from gateway.catalog.routing import RoutedModel

router = APIRouter()


def _card(model: RoutedModel) -> dict[str, Any]:
    return {
        "id": model.name,
        "object": "model",
        "created": model.created,
        "owned_by": model.owned_by,
        "family": model.family,
        "context_length": model.context_length,
        "task": model.task,
        "aliases": list(model.aliases),
        # What a request may ask of this model; one that needs what is missing is refused with a 400.
        "capabilities": {
            "tools": model.constrained_decoding,
            "tool_choice_auto": model.tool_choice_auto,
            "json_schema": model.constrained_decoding,
            "logprobs": True,
        },
        # The time to first token each `service_tier` promises (omitted where the model promises none).
        **({"service_tiers": _tiers(model)} if model.routing.ttft_slo_s is not None else {}),
        "pricing": {
            "input_per_million": float(model.pricing.input_per_million),
            "output_per_million": float(model.pricing.output_per_million),
            "currency": model.pricing.currency,
        },
    }


def _tiers(model: RoutedModel) -> dict[str, dict[str, float]]:
    routing = model.routing
    tiers = [("default", routing.ttft_slo_s), *routing.service_tiers.items()]
    return {tier: {"ttft_slo_s": slo} for tier, slo in tiers if slo is not None}


@router.get("/v1/models")
async def list_models(request: Request, _: Authenticated) -> dict[str, Any]:
    models = get_model_router(request).models()
    return {"object": "list", "data": [_card(m) for m in models]}


@router.get("/v1/models/{model:path}")
async def retrieve_model(model: str, request: Request, _: Authenticated) -> dict[str, Any]:
    return _card(get_model_router(request).resolve(model))
