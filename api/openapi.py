"""The OpenAPI 3.1 document of the API, generated from the route table (``api.routes``): its
paths are the routes the app serves, its schemas those of the pydantic models the routes
name (request bodies as validated, answers as serialized). A test checks that every route
of the aiohttp router is here and nothing else is."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from api.csrf import UNSAFE_METHODS
from api.models import Problem
from api.routes import ROUTES
from api.routing import Route
from pricewatch.settings import Settings

REF = "#/components/schemas/{model}"

# Any request: aiohttp refuses a malformed one (a request line or header over 8 KiB,
# broken encoding) before the app sees it; api.app answers it as a problem document.
MALFORMED = {
    "description": "Malformed HTTP request (e.g. a request line longer than 8 KiB).",
    "content": {"application/json": {"schema": Problem}},
}
CROSS_SITE = "Posted by another website's page (Origin or Sec-Fetch-Site): refused."


def _resolve(value: Any, mode: JsonSchemaMode, found: dict[type[BaseModel], JsonSchemaMode]) -> Any:
    """``value`` with every model class replaced by its ``$ref``; the models go to ``found``."""
    if isinstance(value, type) and issubclass(value, BaseModel):
        if found.setdefault(value, mode) != mode:
            # One $ref per model name: a model is either a request body or an answer.
            raise ValueError(f"{value.__name__} is both a request body and an answer")
        return {"$ref": REF.format(model=value.__name__)}
    if isinstance(value, dict):
        return {
            key: _resolve(item, "validation" if key == "requestBody" else mode, found)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_resolve(item, mode, found) for item in value]
    return value


def _paths(
    routes: Iterable[Route], found: dict[type[BaseModel], JsonSchemaMode]
) -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = _resolve(route.operation, "serialization", found)
        responses = operation["responses"]
        responses.setdefault("400", _resolve(MALFORMED, "serialization", found))
        if route.method in UNSAFE_METHODS and not route.path.startswith("/api/"):
            if "403" in responses:
                responses["403"]["description"] += " Or: " + CROSS_SITE
            else:
                responses["403"] = {
                    "description": CROSS_SITE,
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return paths


def _components(found: dict[type[BaseModel], JsonSchemaMode]) -> dict[str, Any]:
    _, schemas = models_json_schema(list(found.items()), ref_template=REF)
    return dict(schemas.get("$defs", {}))


@cache
def _generated() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    found: dict[type[BaseModel], JsonSchemaMode] = {}
    paths = _paths(ROUTES, found)
    return paths, _components(found)


def openapi_document(settings: Settings) -> dict[str, Any]:
    paths, schemas = copy.deepcopy(_generated())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Pricewatch API",
            "version": "1",
            "description": "Subscribe to product prices; manage subscriptions through signed "
            "links emailed to you. Errors are problem documents with per-field messages.",
        },
        "servers": [{"url": settings.api_base_url}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
        },
    }
