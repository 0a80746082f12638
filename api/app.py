"""The HTTP API process: the aiohttp application serving the route table (``api.routes``:
JSON under /api, the pages for people, /healthz, /readyz), its middlewares, and
``run_api``. Its Prometheus metrics are served on a port of their own (``run_service``,
``PRICEWATCH_METRICS_PORT``), never on the public one. Every error is a problem document
(``api.problems``), or an error page for a person's browser; ``/api/openapi.json``
describes it all.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus

import sqlalchemy
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from api.context import BACKGROUND_KEY, OPENAPI_KEY, SERVICES_KEY, SETTINGS_KEY
from api.csrf import UNSAFE_METHODS, cross_site_reason, origin_of
from api.openapi import openapi_document
from api.pages import problem_page
from api.problems import ApiProblem, problem_response
from api.routes import ROUTES
from api.routing import Handler
from api.services import Services
from pricewatch.db.engine import migrated_engine
from pricewatch.kafka import make_producer
from pricewatch.links import UNSUBSCRIBE_API
from pricewatch.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024

api_requests = Counter(
    "pricewatch_api_requests_total", "API requests by route and status.", ["route", "status"]
)

CROSS_SITE_REFUSED = Counter(
    "pricewatch_api_cross_site_refused_total",
    "Requests that change something refused because another website's page sent them.",
)
OWN_ORIGINS_KEY = web.AppKey("own_origins", frozenset[str])

_MACHINE_PATHS = frozenset({"/healthz", "/readyz"})


# Pages served under /api: the List-Unsubscribe URL opened with a GET asks a person first.
_PAGES_UNDER_API = frozenset({("GET", UNSUBSCRIBE_API)})


def _off_the_api(request: web.Request) -> bool:
    if (request.method, request.path) in _PAGES_UNDER_API:
        return True
    return not request.path.startswith("/api/") and request.path not in _MACHINE_PATHS


def _for_people(request: web.Request) -> bool:
    """A browser asking for a page (not the API): it gets an error page, not JSON."""
    return _off_the_api(request) and "text/html" in request.headers.get("Accept", "")


def _raised_by_a_page(request: web.Request) -> bool:
    """A page's handler raised the problem: it is answered with a page, whatever the client
    accepts (the pages leave their problems to this middleware)."""
    return _off_the_api(request) and request.match_info.http_exception is None


@web.middleware
async def answer_problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """ApiProblem -> its JSON document (an error page for a page or a browser off /api);
    aiohttp's own errors (404, 405, 413) and unexpected exceptions as problems too."""
    try:
        return await handler(request)
    except ApiProblem as problem:
        return _problem_for(request, problem, page=_raised_by_a_page(request))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return _problem_for(request, ApiProblem(exc.status, exc.reason, headers=headers))
    except Exception:
        # A bug: logged with its traceback and answered like any other problem, so the
        # request is still counted (status 500) and still gets the security headers.
        log.exception("unhandled error in %s %s", request.method, request.path)
        return _problem_for(request, ApiProblem(500, "Internal error"))


# Where a form may be posted from without an Origin check: the List-Unsubscribe URL, whose
# one-click POST mail software makes from wherever it runs (webmail pages included); its
# signed token is what proves the right to act, and it changes only the token's subject.
_CROSS_SITE_ALLOWED = frozenset({("POST", UNSUBSCRIBE_API)})


@web.middleware
async def refuse_cross_site_forms(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in UNSAFE_METHODS and (request.method, request.path) not in (
        _CROSS_SITE_ALLOWED
    ):
        reason = cross_site_reason(request, request.app[OWN_ORIGINS_KEY])
        if reason is not None:
            CROSS_SITE_REFUSED.inc()
            log.info("cross-site %s %s refused: %s", request.method, request.path, reason)
            raise ApiProblem(403, "Requests from other websites are refused", reason="cross-site")
    return await handler(request)


def _problem_for(request: web.Request, problem: ApiProblem, *, page: bool = False) -> web.Response:
    if page or _for_people(request):
        return problem_page(problem)
    return problem_response(problem)


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        api_requests.labels(route=route, status=str(exc.status)).inc()
        raise
    api_requests.labels(route=route, status=str(response.status)).inc()
    return response


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    add_security_headers(request, response)
    return response


def add_security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")  # tokens stay in our URLs
    response.headers.setdefault("X-Frame-Options", "DENY")
    if "token" in request.query or (
        request.path.startswith("/api/") and request.path != "/api/openapi.json"
    ):
        response.headers.setdefault("Cache-Control", "no-store")  # personal, or a secret URL
    if response.content_type == "text/html":
        # The pages need no script at all; styles are inline; forms post to us only.
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )


class _ProblemRequestHandler(RequestHandler):
    """aiohttp answers a request it cannot parse (bad request line, headers, chunking)
    before any middleware runs, as text/plain echoing the offending input. This answers
    it like every other error instead: a problem document, no echo, the security headers."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        plain = super().handle_error(request, status, exc, message)  # logs; may raise
        title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        response = problem_response(ApiProblem(status, title))
        add_security_headers(request, response)
        response.force_close()  # as aiohttp does: the stream may be out of step
        api_requests.labels(route="unparsed", status=str(plain.status)).inc()
        return response


class _ProblemServer(Server):
    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """An AppRunner whose connections answer unparseable requests as problems."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # aiohttp has no hook for the request handler's class: the server it built for
        # this app is given the one subclass that differs only in handle_error.
        server.__class__ = _ProblemServer
        return server


def create_api_app(
    settings: Settings, producer: AIOKafkaProducer, engine: sqlalchemy.Engine
) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[count_requests, security_headers, answer_problems, refuse_cross_site_forms],
    )
    app[SETTINGS_KEY] = settings
    app[OWN_ORIGINS_KEY] = frozenset({origin_of(settings.api_base_url)})
    app[SERVICES_KEY] = Services.create(settings, producer, engine)
    app[BACKGROUND_KEY] = set()
    app[OPENAPI_KEY] = openapi_document(settings)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)

    async def finish_background(app: web.Application) -> None:
        pending = app[BACKGROUND_KEY]
        tasks = [*pending]
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    app.on_shutdown.append(finish_background)

    async def close_resolver(app: web.Application) -> None:
        app[SERVICES_KEY].backend.resolver.close()

    app.on_cleanup.append(close_resolver)
    return app


async def run_api(settings: Settings, stop: asyncio.Event) -> None:
    # Refuse to start without a key (every link needs it) or with a public one.
    settings.refuse_public_secret_key()
    if settings.demo:
        log.warning("PRICEWATCH_DEMO=true: a demo; do not let others reach this API")
    producer = make_producer(settings)
    await producer.start()
    try:
        async with migrated_engine(settings) as engine:
            runner = ApiRunner(create_api_app(settings, producer, engine), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, settings.api_host, settings.api_port)
            await site.start()
            log.info("API on http://%s:%d", settings.api_host, settings.api_port)
            try:
                await stop.wait()
            finally:
                await runner.cleanup()
    finally:
        await producer.stop()
