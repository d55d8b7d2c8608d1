"""Request bodies in ``/openapi.json``. Routes read their bodies with ``parse_body`` (so a malformed body is
an OpenAI error, not FastAPI's), which FastAPI cannot see; each such route names its pydantic model with
``json_body(Model)``, and ``with_bodies`` puts the models' JSON schemas into the document's components."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_REF = "#/components/schemas/{model}"


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body is ``model``."""
    schema = {"$ref": _REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def with_bodies(app: FastAPI, models: list[type[BaseModel]]) -> Callable[[], dict[str, Any]]:
    """An ``app.openapi`` that adds ``models`` (and the models they use) to the schema's components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template=_REF)
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            app.openapi_schema = document
        return app.openapi_schema

    return openapi
