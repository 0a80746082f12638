"""The route table: every JSON route and page the API serves, each with its OpenAPI
operation. ``api.app`` serves it and ``api.openapi`` documents it."""

from __future__ import annotations

from api import json_routes, pages
from api.routing import Route

ROUTES: tuple[Route, ...] = (*json_routes.ROUTES, *pages.ROUTES)
