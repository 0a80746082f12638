"""What a request handler finds on the aiohttp application, and the helpers every handler
(JSON route or page) shares."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from api.problems import ApiProblem
from api.services import Services
from pricewatch.settings import Settings

log = logging.getLogger(__name__)

SETTINGS_KEY = web.AppKey("settings", Settings)
SERVICES_KEY = web.AppKey("services", Services)
BACKGROUND_KEY = web.AppKey("background", set[asyncio.Future[None]])
# The OpenAPI document, built once from the route table when the app is made.
OPENAPI_KEY = web.AppKey("openapi", dict[str, Any])


def services(request: web.Request) -> Services:
    return request.app[SERVICES_KEY]


def client_address(request: web.Request) -> str:
    # The peer address. Behind a reverse proxy every client shares the proxy's address:
    # put the limit in the proxy, or raise this one (X-Forwarded-For is not trusted here).
    return request.remote or "unknown"


def run_in_background(app: web.Application, work: Awaitable[None]) -> None:
    async def guarded() -> None:
        try:
            await work
        except ApiProblem as exc:
            log.warning("background request failed: %s", exc.title)
        except Exception:
            log.exception("background request failed")

    task = asyncio.ensure_future(guarded())
    tasks = app[BACKGROUND_KEY]
    tasks.add(task)
    task.add_done_callback(tasks.discard)
