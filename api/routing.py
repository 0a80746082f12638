"""A route of the API: method, path, handler and its OpenAPI operation, declared together so
the document (``api.openapi``) is generated from what is served.

An operation is written as OpenAPI (summary, parameters, responses) with pydantic models
where a schema goes: ``json_body(Model)``, ``json_reply(Model, ...)``, ``problem(...)``. The
generator turns each model into a ``$ref`` and puts its schema among the components.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from api.models import Problem
from pricewatch.tokens import MAX_TOKEN_CHARS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Operation = dict[str, Any]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    operation: Operation = field(repr=False)


def operation(
    summary: str,
    *,
    responses: dict[str, Any],
    description: str | None = None,
    security: list[dict[str, list[str]]] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> Operation:
    """An OpenAPI operation object; keys left out stay out of the document."""
    out: Operation = {"summary": summary}
    if description is not None:
        out["description"] = description
    if security is not None:
        out["security"] = security
    if parameters is not None:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = body
    out["responses"] = responses
    return out


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": model}}}


def form_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "properties": properties, "required": required}
            }
        },
    }


def json_reply(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": model}}}


def problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out = json_reply(Problem, description)
    if headers:
        out["headers"] = headers
    return out


def html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}}
TOKEN = {
    "name": "token",
    "in": "query",
    "required": True,
    "description": "The signed token of the link Pricewatch emailed.",
    "schema": {"type": "string", "maxLength": MAX_TOKEN_CHARS, "pattern": "^[A-Za-z0-9_.=-]*$"},
}


def path_parameter(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


SUBSCRIPTION_ID = path_parameter("subscription_id", {"type": "string", "maxLength": 200})
CHANNEL_ID = path_parameter("channel_id", {"type": "string", "maxLength": 200})
COMMON = {
    "400": problem("The body is not JSON."),
    "413": problem("The body is larger than 16 KiB."),
    "415": problem("The body is not sent as application/json."),
    "503": problem("The broker or the database is unreachable; try again."),
}
