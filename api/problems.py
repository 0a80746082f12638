"""Answers other than success: the ``ApiProblem`` the services and handlers raise, and the
JSON problem document (``{"title", "status", "errors"?, "reason"?}``) it becomes. The pages
render the same problems as HTML (``api.pages.problem_page``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError


class ApiProblem(Exception):
    """An answer other than success: the HTTP layer renders it (JSON or a page)."""

    def __init__(
        self,
        status: int,
        title: str,
        *,
        errors: list[dict[str, str]] | None = None,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.errors = errors
        self.reason = reason
        self.headers = headers or {}


def unavailable(what: str) -> ApiProblem:
    return ApiProblem(503, f"{what} is unavailable right now; try again shortly")


def invalid(field: str, message: str, title: str = "Invalid request") -> ApiProblem:
    return ApiProblem(422, title, errors=[{"field": field, "message": message}])


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """A pydantic error as the problem document's field-by-field list."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors()
    ]


def problem_response(problem: ApiProblem) -> web.Response:
    body: dict[str, Any] = {"title": problem.title, "status": problem.status}
    if problem.errors is not None:
        body["errors"] = problem.errors
    if problem.reason is not None:
        body["reason"] = problem.reason
    return web.json_response(body, status=problem.status, headers=problem.headers)
