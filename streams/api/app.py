"""The HTTP API (JSON under /api), health endpoints and the pages for people.

What each endpoint does lives in ``streams.api.service``; this module parses requests,
checks limits and renders answers. Every error is a JSON problem document
(``{"title", "status", "errors"?, "reason"?}``); ``/api/openapi.json`` describes it all.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import sqlalchemy
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import BaseModel, ValidationError

from pricewatch.contract.topics import SUBSCRIPTIONS
from pricewatch.kafka import make_producer
from pricewatch.links import UNSUBSCRIBE_API
from pricewatch.settings import Settings
from pricewatch.urlguard import UrlRefused, check_resolved_host
from streams.api import store
from streams.api.models import (
    Accepted,
    AdminProduct,
    AdminProductList,
    AdminUser,
    AdminUserList,
    AdminWebsite,
    Health,
    ManageLinkRequest,
    SubscribeRequest,
    SubscribeResponse,
    SubscriptionEdit,
    UnsubscribeResult,
    Website,
    WebsiteCreate,
    WebsiteEdit,
    WebsiteList,
)
from streams.api.service import ApiProblem, Service, field_errors, subscription_out

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
READY_TIMEOUT_SECONDS = 3.0
MAX_PAGE = 500

api_requests = Counter(
    "pricewatch_api_requests_total", "API requests by route and status.", ["route", "status"]
)

SETTINGS_KEY = web.AppKey("settings", Settings)
PRODUCER_KEY = web.AppKey("producer", AIOKafkaProducer)
SERVICE_KEY = web.AppKey("service", Service)
BACKGROUND_KEY = web.AppKey("background", set[asyncio.Future[None]])

M = TypeVar("M", bound=BaseModel)


def problem_response(problem: ApiProblem) -> web.Response:
    body: dict[str, Any] = {"title": problem.title, "status": problem.status}
    if problem.errors is not None:
        body["errors"] = problem.errors
    if problem.reason is not None:
        body["reason"] = problem.reason
    return web.json_response(body, status=problem.status, headers=problem.headers)


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


async def parse_body(request: web.Request, model: type[M], title: str) -> M:
    try:
        payload = await request.json()
    except (ValueError, LookupError, RecursionError):
        # Not JSON, not in its declared charset (or an unknown one: LookupError), or
        # nested too deep for the parser (RecursionError): the client's fault, not a 500.
        raise ApiProblem(400, "Body must be a JSON object") from None
    nul_at = _nul_character_at(payload)
    if nul_at is not None:
        # PostgreSQL text cannot hold NUL: refuse it here, by field, not as a database error.
        raise ApiProblem(
            422, title, errors=[{"field": nul_at, "message": "must not contain a NUL character"}]
        )
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ApiProblem(422, title, errors=field_errors(exc)) from None


def _nul_character_at(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (value or key) holding "\\x00", if any."""
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return where.replace("\x00", "\\0")
            found = _nul_character_at(item, where)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_character_at(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def client_address(request: web.Request) -> str:
    # The peer address. Behind a reverse proxy every client shares the proxy's address:
    # put the limit in the proxy, or raise this one (X-Forwarded-For is not trusted here).
    return request.remote or "unknown"


def service(request: web.Request) -> Service:
    return request.app[SERVICE_KEY]


# --- public JSON API ---------------------------------------------------------------------


async def subscribe(request: web.Request) -> web.Response:
    svc = service(request)
    svc.limit_address(client_address(request))
    body = await parse_body(request, SubscribeRequest, "Invalid subscription")
    record = await svc.subscribe(body)
    # The same words for every address: whether it is known shows only in its mailbox.
    next_step = f"Check your inbox: follow the link we sent to {record.email} to start alerts."
    out = SubscribeResponse(**subscription_out(record).model_dump(), next_step=next_step)
    return _json(out, status=201)


async def confirm_subscription(request: web.Request) -> web.Response:
    return _json(await service(request).confirm(request.query.get("token")))


async def verify(request: web.Request) -> web.Response:
    return _json(await service(request).verify(request.query.get("token")))


async def unsubscribe(request: web.Request) -> web.Response:
    # GET (a link) and POST (RFC 8058 one-click, body "List-Unsubscribe=One-Click") alike.
    stopped = await service(request).unsubscribe(request.query.get("token"))
    return _json(UnsubscribeResult(unsubscribed=stopped))


async def manage(request: web.Request) -> web.Response:
    return _json(await service(request).manage_view(request.query.get("token")))


async def edit_subscription(request: web.Request) -> web.Response:
    body = await parse_body(request, SubscriptionEdit, "Invalid change")
    out = await service(request).edit(
        request.query.get("token"), request.match_info["subscription_id"], body
    )
    return _json(out)


async def product_prices(request: web.Request) -> web.Response:
    history = await service(request).price_history(
        request.query.get("token"), request.match_info["product_id"]
    )
    return _json(history)


async def manage_link(request: web.Request) -> web.Response:
    svc = service(request)
    svc.limit_address(client_address(request))
    body = await parse_body(request, ManageLinkRequest, "Invalid request")
    svc.limit_email(body.email)
    # Answered before the lookup, and the same for every address: neither the answer nor
    # its timing tells whether the address is known.
    run_in_background(request.app, svc.send_manage_link(body.email))
    return _json(
        Accepted(status="If this address has subscriptions, a link is on its way."), status=202
    )


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


async def list_websites(request: web.Request) -> web.Response:
    rows = await service(request).db(store.websites)
    return _json(
        WebsiteList(
            websites=[Website.model_validate(r) for r in rows if not r["paused"]],
            generic_extraction=True,
        )
    )


# --- admin -----------------------------------------------------------------------------


def require_admin(request: web.Request) -> None:
    token = request.app[SETTINGS_KEY].admin_token
    expected = "" if token is None else token.get_secret_value().strip()
    if not expected:
        # Off, also when set to blanks: an empty token must never match an empty guess.
        raise ApiProblem(404, "Not Found")  # the admin API is off: nothing to find here
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise ApiProblem(
            401, "Admin token required", headers={"WWW-Authenticate": 'Bearer realm="admin"'}
        )
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiProblem(403, "Wrong admin token")


def _paging(request: web.Request) -> tuple[int, int]:
    try:
        limit = int(request.query.get("limit", "100"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        raise ApiProblem(
            422, "Invalid paging", errors=[{"field": "limit", "message": "integers only"}]
        ) from None
    if not (1 <= limit <= MAX_PAGE) or not (0 <= offset <= 10**9):
        raise ApiProblem(
            422,
            "Invalid paging",
            errors=[{"field": "limit", "message": f"limit 1..{MAX_PAGE}, offset 0..1e9"}],
        )
    return limit, offset


async def admin_websites(request: web.Request) -> web.Response:
    require_admin(request)
    rows = await service(request).db(store.websites)
    return web.json_response(
        {"websites": [AdminWebsite.model_validate(r).model_dump(mode="json") for r in rows]}
    )


async def admin_add_website(request: web.Request) -> web.Response:
    require_admin(request)
    body = await parse_body(request, WebsiteCreate, "Invalid website")
    try:
        # The same guard as for product URLs: a website's pages get fetched.
        await check_resolved_host(body.base_url, service(request).settings.allowed_private_host_set)
    except UrlRefused as exc:
        raise ApiProblem(
            422, "Invalid website", errors=[{"field": "base_url", "message": str(exc)}]
        ) from None
    # A website is its host name, port aside: the scrapers (pausing), the price sink
    # (products.website_id) and the subscribe check all match URLs by host name.
    host = urlsplit(body.base_url).hostname or ""
    row = await service(request).db(
        store.add_website,
        {
            "name": body.name,
            "host": host,
            "base_url": body.base_url,
            "adapter_config": body.adapter_config,
            "interval": body.default_check_interval_seconds,
            "paused": body.paused,
        },
    )
    if row is None:
        raise ApiProblem(409, f"A website with host {host} exists")
    return _json(AdminWebsite.model_validate(row), status=201)


async def admin_edit_website(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        website_id = int(request.match_info["website_id"])
    except ValueError:
        raise ApiProblem(404, "No such website") from None
    if not 0 < website_id < 2**63:
        raise ApiProblem(404, "No such website")
    body = await parse_body(request, WebsiteEdit, "Invalid change")
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    if any(value is None for value in changes.values()):
        raise ApiProblem(
            422,
            "Invalid change",
            errors=[
                {"field": name, "message": "may not be null"}
                for name, value in changes.items()
                if value is None
            ],
        )
    row = await service(request).db(store.edit_website, website_id, changes)
    if row is None:
        raise ApiProblem(404, "No such website")
    return _json(AdminWebsite.model_validate(row))


async def admin_products(request: web.Request) -> web.Response:
    require_admin(request)
    rows = await service(request).db(store.products, *_paging(request))
    return _json(AdminProductList(products=[AdminProduct.model_validate(r) for r in rows]))


async def admin_users(request: web.Request) -> web.Response:
    require_admin(request)
    rows = await service(request).db(store.users, *_paging(request))
    return _json(AdminUserList(users=[AdminUser.model_validate(r) for r in rows]))


# --- health ------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return _json(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    """Ready when the broker answers a metadata request and the database a query."""
    svc = service(request)
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            partitions = await svc.producer.partitions_for(svc.settings.topic(SUBSCRIPTIONS))
        checks["broker"] = "ok" if partitions else "no subscriptions topic"
    except Exception as exc:
        checks["broker"] = f"unreachable ({exc.__class__.__name__})"
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await asyncio.to_thread(store.ping, svc.engine)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable ({exc.__class__.__name__})"
    ready = all(value == "ok" for value in checks.values())
    return _json(
        Health(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503
    )


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    from streams.api.openapi import openapi_document

    return web.json_response(openapi_document(request.app[SETTINGS_KEY]))


# --- wiring ------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_MACHINE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _off_the_api(request: web.Request) -> bool:
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


def _problem_for(request: web.Request, problem: ApiProblem, *, page: bool = False) -> web.Response:
    if page or _for_people(request):
        from streams.api.pages import problem_page

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
    return response


API_ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/api/subscriptions", subscribe),
    ("POST", "/api/subscriptions/confirm", confirm_subscription),
    ("GET", "/api/verify", verify),
    ("GET", UNSUBSCRIBE_API, unsubscribe),
    ("POST", UNSUBSCRIBE_API, unsubscribe),
    ("GET", "/api/manage", manage),
    ("PATCH", "/api/manage/subscriptions/{subscription_id}", edit_subscription),
    ("GET", "/api/manage/products/{product_id}/prices", product_prices),
    ("POST", "/api/manage-link", manage_link),
    ("GET", "/api/websites", list_websites),
    ("GET", "/api/admin/websites", admin_websites),
    ("POST", "/api/admin/websites", admin_add_website),
    ("PATCH", "/api/admin/websites/{website_id}", admin_edit_website),
    ("GET", "/api/admin/products", admin_products),
    ("GET", "/api/admin/users", admin_users),
    ("GET", "/api/openapi.json", openapi),
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/metrics", metrics),
]


def create_api_app(
    settings: Settings, producer: AIOKafkaProducer, engine: sqlalchemy.Engine
) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[count_requests, security_headers, answer_problems],
    )
    app[SETTINGS_KEY] = settings
    app[PRODUCER_KEY] = producer
    app[SERVICE_KEY] = Service(settings, producer, engine)
    app[BACKGROUND_KEY] = set()
    for method, path, handler in API_ROUTES:
        app.router.add_route(method, path, handler)
    from streams.api.pages import add_page_routes

    add_page_routes(app)

    async def finish_background(app: web.Application) -> None:
        pending = app[BACKGROUND_KEY]
        tasks = [*pending]
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    app.on_shutdown.append(finish_background)
    return app


async def run_api(settings: Settings, stop: asyncio.Event) -> None:
    from pricewatch.db.engine import migrated_engine

    settings.secret_key_bytes()  # refuse to start without it: every link needs it
    producer = make_producer(settings)
    await producer.start()
    try:
        async with migrated_engine(settings) as engine:
            runner = web.AppRunner(create_api_app(settings, producer, engine), access_log=None)
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
