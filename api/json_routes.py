"""The JSON API under /api, and /healthz and /readyz (metrics are on a port of their own,
``PRICEWATCH_METRICS_PORT``, never on this one): each handler parses its
request, checks limits and renders the answer; what it does lives in ``api.services``.
Every route is listed in ``ROUTES`` with its OpenAPI operation.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from api import models as m
from api import queries
from api.context import OPENAPI_KEY, client_address, run_in_background, services
from api.problems import ApiProblem, field_errors
from api.routing import (
    CHANNEL_ID,
    COMMON,
    RETRY_AFTER,
    SUBSCRIPTION_ID,
    TOKEN,
    Route,
    form_body,
    json_body,
    json_reply,
    operation,
    path_parameter,
    problem,
)
from api.services.admin import Admin
from api.services.base import ACCOUNT_REQUESTS
from api.services.subscriptions import subscription_out
from pricewatch.contract.topics import SUBSCRIPTIONS
from pricewatch.links import UNSUBSCRIBE_API
from pricewatch.tokens import TokenPurpose

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 3.0
MAX_PAGE = 500

M = TypeVar("M", bound=BaseModel)


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def parse_body(request: web.Request, model: type[M], title: str) -> M:
    # Only JSON: a page of another site can send text/plain or a form without asking, but
    # not application/json (that needs a CORS preflight, which this API never allows).
    if not _is_json(request.content_type):
        raise ApiProblem(415, "The body must be JSON, sent as Content-Type: application/json")
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


TOKEN_ERRORS = {
    "403": problem("The link is forged, for another purpose, or expired (reason: expired)."),
    "422": problem("No token."),
}


# --- public JSON API ---------------------------------------------------------------------


async def subscribe(request: web.Request) -> web.Response:
    svc = services(request)
    svc.backend.limit_address(client_address(request))
    body = await parse_body(request, m.SubscribeRequest, "Invalid subscription")
    record = await svc.subscriptions.accept(body)
    # What depends on the address (new, unverified or verified: which email, what is
    # stored) runs after the answer, so neither the answer nor its timing tells.
    run_in_background(request.app, svc.subscriptions.carry_out(body, record))
    ACCOUNT_REQUESTS.labels("subscribe").inc()
    # The same words for every address: whether it is known shows only in its mailbox.
    next_step = f"Check your inbox: follow the link we sent to {record.email} to start alerts."
    out = m.SubscribeResponse(**subscription_out(record).model_dump(), next_step=next_step)
    return _json(out, status=201)


async def confirm_subscription(request: web.Request) -> web.Response:
    return _json(await services(request).subscriptions.confirm(request.query.get("token")))


async def verify(request: web.Request) -> web.Response:
    return _json(await services(request).accounts.verify(request.query.get("token")))


ONE_CLICK = ("List-Unsubscribe", "One-Click")


async def unsubscribe(request: web.Request) -> web.Response:
    """RFC 8058 one-click: the List-Unsubscribe header's URL acts only on a POST whose body
    is ``List-Unsubscribe=One-Click`` (what mail software sends when a person presses
    Unsubscribe); a GET (a scanner, a preview, a person following the URL) only shows the
    page that asks (``api.pages.unsubscribe_page``)."""
    svc = services(request)
    token = request.query.get("token")
    svc.backend.claims(token, TokenPurpose.UNSUBSCRIBE)  # a bad link says so first
    try:
        form = await request.post()
    except ValueError:
        form = None  # not a form body at all
    if form is None or form.get(ONE_CLICK[0]) != ONE_CLICK[1]:
        raise ApiProblem(
            400,
            "A one-click unsubscribe is a POST of List-Unsubscribe=One-Click (RFC 8058)",
        )
    stopped = await svc.subscriptions.unsubscribe(token)
    return _json(m.UnsubscribeResult(unsubscribed=stopped))


async def manage(request: web.Request) -> web.Response:
    return _json(await services(request).accounts.manage_view(request.query.get("token")))


async def edit_subscription(request: web.Request) -> web.Response:
    body = await parse_body(request, m.SubscriptionEdit, "Invalid change")
    out = await services(request).subscriptions.edit(
        request.query.get("token"), request.match_info["subscription_id"], body
    )
    return _json(out)


async def product_prices(request: web.Request) -> web.Response:
    history = await services(request).accounts.price_history(
        request.query.get("token"), request.match_info["product_id"]
    )
    return _json(history)


async def manage_link(request: web.Request) -> web.Response:
    svc = services(request)
    svc.backend.limit_address(client_address(request))
    body = await parse_body(request, m.ManageLinkRequest, "Invalid request")
    # Not counted against the address's own limit: others' calls must not use up its
    # owner's way back in. It needs none: one manage-link email an hour at most goes to an
    # address (send_account_email's key), however often anyone asks.
    # Answered before the lookup, and the same for every address: neither the answer nor
    # its timing tells whether the address is known.
    run_in_background(request.app, svc.accounts.send_manage_link(body.email))
    ACCOUNT_REQUESTS.labels("manage_link").inc()
    return _json(
        m.Accepted(status="If this address has subscriptions, a link is on its way."), status=202
    )


async def list_channels(request: web.Request) -> web.Response:
    channels = await services(request).channels.of_address(request.query.get("token"))
    return _json(m.ChannelList(channels=channels))


async def add_channel(request: web.Request) -> web.Response:
    svc = services(request)
    svc.backend.limit_address(client_address(request))
    body = await parse_body(request, m.ChannelAdd, "Invalid channel")
    return _json(await svc.channels.add(request.query.get("token"), body), status=201)


async def edit_channel(request: web.Request) -> web.Response:
    body = await parse_body(request, m.ChannelEdit, "Invalid change")
    out = await services(request).channels.change(
        request.query.get("token"), request.match_info["channel_id"], body
    )
    return _json(out)


async def remove_channel(request: web.Request) -> web.Response:
    await services(request).channels.remove(
        request.query.get("token"), request.match_info["channel_id"]
    )
    return web.Response(status=204)


async def resend_channel_test(request: web.Request) -> web.Response:
    svc = services(request)
    svc.backend.limit_address(client_address(request))
    out = await svc.channels.resend_test(
        request.query.get("token"), request.match_info["channel_id"]
    )
    return _json(out, status=202)


async def confirm_channel(request: web.Request) -> web.Response:
    return _json(await services(request).channels.confirm(request.query.get("token")))


async def list_websites(request: web.Request) -> web.Response:
    rows = await services(request).subscriptions.tracked_websites()
    return _json(
        m.WebsiteList(
            websites=[m.Website.model_validate(r) for r in rows if not r["paused"]],
            generic_extraction=True,
        )
    )


_UNSUBSCRIBE = operation(
    "RFC 8058 one-click unsubscribe: stop one subscription, or all of an address (the "
    "token says which)",
    description="The List-Unsubscribe URL of every alert. Only this POST, with the body "
    "List-Unsubscribe=One-Click, changes anything; a GET of the same URL shows a page that "
    "asks first.",
    parameters=[TOKEN],
    body=form_body(
        {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}}, ["List-Unsubscribe"]
    ),
    responses={
        "200": json_reply(m.UnsubscribeResult, "Stopped (0 when they already were)."),
        "400": problem("The body is not List-Unsubscribe=One-Click."),
        **TOKEN_ERRORS,
        "413": COMMON["413"],
        "503": COMMON["503"],
    },
)

PUBLIC_ROUTES = [
    Route(
        "POST",
        "/api/subscriptions",
        subscribe,
        operation(
            "Ask to subscribe an email address to a product page",
            description="Nothing alerts until the address's owner follows the link "
            "emailed now: a new or unconfirmed address gets its verification email (one "
            "a day; its link starts all the address's subscriptions), a verified address "
            "a link that starts or changes this one subscription (until then its current "
            "subscriptions stay as they are). The answer is the same for every address. "
            "Asking again for the same product updates the same subscription.",
            body=json_body(m.SubscribeRequest),
            responses={
                "201": json_reply(m.SubscribeResponse, "Accepted; verified is always false."),
                "422": problem("Invalid input, one message per field."),
                "429": problem("Too many calls from this address or email.", RETRY_AFTER),
                **COMMON,
            },
        ),
    ),
    Route(
        "POST",
        "/api/subscriptions/confirm",
        confirm_subscription,
        operation(
            "Start the subscription a confirmation email's link carries",
            description="Following it again changes nothing. A link older than a later "
            "change of the same subscription is refused with 409 (reason superseded).",
            parameters=[TOKEN],
            responses={
                "200": json_reply(m.SubscriptionOut, "Started (or already running as asked)."),
                "404": problem("No such address."),
                "409": problem("The subscription changed after the link was sent."),
                "403": TOKEN_ERRORS["403"],
                "422": problem("No token, or the request no longer passes validation."),
                "503": COMMON["503"],
            },
        ),
    ),
    Route(
        "POST",
        "/api/verify",
        verify,
        operation(
            "Confirm an address (the token of the verification email's link)",
            description="The email's link opens a page (GET /verify) whose button does the "
            "same; nothing changes on a GET.",
            parameters=[TOKEN],
            responses={
                "200": json_reply(m.VerifyResult, "Verified; its subscriptions now alert."),
                "404": problem("No such address."),
                **TOKEN_ERRORS,
                "503": COMMON["503"],
            },
        ),
    ),
    Route("POST", UNSUBSCRIBE_API, unsubscribe, _UNSUBSCRIBE),
    Route(
        "GET",
        "/api/manage",
        manage,
        operation(
            "The subscriptions of the address a manage link was sent to",
            parameters=[TOKEN],
            responses={
                "200": json_reply(m.ManageView, "The address's subscriptions."),
                **TOKEN_ERRORS,
                "503": COMMON["503"],
            },
        ),
    ),
    Route(
        "PATCH",
        "/api/manage/subscriptions/{subscription_id}",
        edit_subscription,
        operation(
            "Change one's own subscription",
            parameters=[SUBSCRIPTION_ID, TOKEN],
            body=json_body(m.SubscriptionEdit),
            responses={
                "200": json_reply(m.SubscriptionOut, "Changed and published."),
                "404": problem("Not a subscription of this address."),
                **TOKEN_ERRORS,
                "422": problem("Invalid change, or no token."),
                **COMMON,
            },
        ),
    ),
    Route(
        "GET",
        "/api/manage/products/{product_id}/prices",
        product_prices,
        operation(
            "Price history of a product the address watches",
            parameters=[
                path_parameter("product_id", {"type": "string", "maxLength": 200}),
                TOKEN,
            ],
            responses={
                "200": json_reply(m.PriceHistory, "Oldest first (at most the newest 2000)."),
                "404": problem("Not a product this address watches."),
                **TOKEN_ERRORS,
                "503": COMMON["503"],
            },
        ),
    ),
    Route(
        "GET",
        "/api/manage/channels",
        list_channels,
        operation(
            "The address's channels (chat, push, webhook), masked",
            parameters=[TOKEN],
            responses={
                "200": json_reply(m.ChannelList, "The channels."),
                **TOKEN_ERRORS,
                "503": COMMON["503"],
            },
        ),
    ),
    Route(
        "POST",
        "/api/manage/channels",
        add_channel,
        operation(
            "Add a channel; it gets a test message with a confirmation link",
            description="Nothing but that test message goes to the channel until the link "
            "is followed. The URL is checked by the URL guard now and at every send; it is "
            "stored sealed and shown back masked. A webhook's signing secret is in this "
            "answer only.",
            parameters=[TOKEN],
            body=json_body(m.ChannelAdd),
            responses={
                "201": json_reply(m.ChannelAdded, "Added, pending confirmation."),
                "403": TOKEN_ERRORS["403"],
                "409": problem("Added already, or the address has as many as it may."),
                "422": problem("Invalid channel, one message per field; or no token."),
                "429": problem("Too many calls.", RETRY_AFTER),
                **COMMON,
            },
        ),
    ),
    Route(
        "PATCH",
        "/api/manage/channels/{channel_id}",
        edit_channel,
        operation(
            "Pause, resume or rename one's channel",
            parameters=[CHANNEL_ID, TOKEN],
            body=json_body(m.ChannelEdit),
            responses={
                "200": json_reply(m.ChannelOut, "Changed."),
                "404": problem("Not a channel of this address."),
                "409": problem("Not confirmed yet: it cannot be paused or resumed."),
                **TOKEN_ERRORS,
                "422": problem("Invalid change, or no token."),
                **COMMON,
            },
        ),
    ),
    Route(
        "DELETE",
        "/api/manage/channels/{channel_id}",
        remove_channel,
        operation(
            "Remove one's channel",
            parameters=[CHANNEL_ID, TOKEN],
            responses={
                "204": {"description": "Removed."},
                "404": problem("Not a channel of this address."),
                **TOKEN_ERRORS,
                "503": COMMON["503"],
            },
        ),
    ),
    Route(
        "POST",
        "/api/manage/channels/{channel_id}/test",
        resend_channel_test,
        operation(
            "Send a pending channel its test message again (at most one an hour goes out)",
            parameters=[CHANNEL_ID, TOKEN],
            responses={
                "202": json_reply(m.ChannelOut, "On its way."),
                "404": problem("Not a channel of this address."),
                "409": problem("Confirmed already."),
                "429": problem("Too many calls.", RETRY_AFTER),
                **TOKEN_ERRORS,
                "503": COMMON["503"],
            },
        ),
    ),
    Route(
        "POST",
        "/api/channels/confirm",
        confirm_channel,
        operation(
            "Confirm a channel (the link of its test message)",
            description="Following it again changes nothing; a paused channel stays paused.",
            parameters=[TOKEN],
            responses={
                "200": json_reply(m.ChannelOut, "Confirmed: alerts go there now."),
                "404": problem("The channel was removed."),
                **TOKEN_ERRORS,
                "503": COMMON["503"],
            },
        ),
    ),
    Route(
        "POST",
        "/api/manage-link",
        manage_link,
        operation(
            "Email a manage link to an address (same answer for any address)",
            body=json_body(m.ManageLinkRequest),
            responses={
                "202": json_reply(m.Accepted, "Accepted."),
                "422": problem("Not an email address."),
                "429": problem("Too many calls.", RETRY_AFTER),
                "400": COMMON["400"],
                "413": COMMON["413"],
                "415": COMMON["415"],
            },
        ),
    ),
    Route(
        "GET",
        "/api/websites",
        list_websites,
        operation(
            "What can be tracked",
            responses={
                "200": json_reply(m.WebsiteList, "Websites with adapters."),
                "503": COMMON["503"],
            },
        ),
    ),
]


# --- admin -----------------------------------------------------------------------------


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


def _admin(request: web.Request) -> Admin:
    admin = services(request).admin
    admin.require(request.headers.get("Authorization", ""), client_address(request))
    return admin


async def admin_websites(request: web.Request) -> web.Response:
    rows = await _admin(request).websites()
    return web.json_response(
        {"websites": [m.AdminWebsite.model_validate(r).model_dump(mode="json") for r in rows]}
    )


async def admin_add_website(request: web.Request) -> web.Response:
    admin = _admin(request)
    body = await parse_body(request, m.WebsiteCreate, "Invalid website")
    row = await admin.add_website(body)
    return _json(m.AdminWebsite.model_validate(row), status=201)


async def admin_edit_website(request: web.Request) -> web.Response:
    admin = _admin(request)
    try:
        website_id = int(request.match_info["website_id"])
    except ValueError:
        raise ApiProblem(404, "No such website") from None
    if not 0 < website_id < 2**63:
        raise ApiProblem(404, "No such website")
    body = await parse_body(request, m.WebsiteEdit, "Invalid change")
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
    row = await admin.edit_website(website_id, changes)
    return _json(m.AdminWebsite.model_validate(row))


async def admin_products(request: web.Request) -> web.Response:
    admin = _admin(request)
    rows = await admin.products(*_paging(request))
    return _json(m.AdminProductList(products=[m.AdminProduct.model_validate(r) for r in rows]))


async def admin_users(request: web.Request) -> web.Response:
    admin = _admin(request)
    rows = await admin.users(*_paging(request))
    return _json(m.AdminUserList(users=[m.AdminUser.model_validate(r) for r in rows]))


ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]
ADMIN_ERRORS = {
    "401": problem("No admin token."),
    "403": problem("Wrong admin token."),
    "429": problem("Too many wrong admin tokens from this client.", RETRY_AFTER),
    "404": problem("The admin API is off (no admin token configured), or no such item."),
}
PAGING = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
    },
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
]

ADMIN_ROUTES = [
    Route(
        "GET",
        "/api/admin/websites",
        admin_websites,
        operation(
            "Every website with its adapter configuration",
            security=ADMIN,
            responses={
                "200": {
                    "description": "Websites.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "websites": {"type": "array", "items": m.AdminWebsite}
                                },
                            }
                        }
                    },
                },
                **ADMIN_ERRORS,
                "503": COMMON["503"],
            },
        ),
    ),
    Route(
        "POST",
        "/api/admin/websites",
        admin_add_website,
        operation(
            "Add a website",
            security=ADMIN,
            body=json_body(m.WebsiteCreate),
            responses={
                "201": json_reply(m.AdminWebsite, "Added."),
                "409": problem("A website with this host exists."),
                "422": problem("Invalid website."),
                **ADMIN_ERRORS,
                **COMMON,
            },
        ),
    ),
    Route(
        "PATCH",
        "/api/admin/websites/{website_id}",
        admin_edit_website,
        operation(
            "Edit a website's adapter configuration, interval, or pause it",
            security=ADMIN,
            parameters=[path_parameter("website_id", {"type": "integer", "minimum": 1})],
            body=json_body(m.WebsiteEdit),
            responses={
                "200": json_reply(m.AdminWebsite, "Changed."),
                "422": problem("Invalid change."),
                **ADMIN_ERRORS,
                **COMMON,
            },
        ),
    ),
    Route(
        "GET",
        "/api/admin/products",
        admin_products,
        operation(
            "Tracked products",
            security=ADMIN,
            parameters=PAGING,
            responses={
                "200": json_reply(m.AdminProductList, "Products."),
                "422": problem("Invalid paging."),
                **ADMIN_ERRORS,
                "503": COMMON["503"],
            },
        ),
    ),
    Route(
        "GET",
        "/api/admin/users",
        admin_users,
        operation(
            "Users with their subscription counts",
            security=ADMIN,
            parameters=PAGING,
            responses={
                "200": json_reply(m.AdminUserList, "Users."),
                "422": problem("Invalid paging."),
                **ADMIN_ERRORS,
                "503": COMMON["503"],
            },
        ),
    ),
]


# --- the document, health and metrics ----------------------------------------------------


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])


async def healthz(request: web.Request) -> web.Response:
    return _json(m.Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    """Ready when the broker answers a metadata request and the database a query."""
    backend = services(request).backend
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            topic = backend.settings.topic(SUBSCRIPTIONS)
            partitions = await backend.producer.partitions_for(topic)
        checks["broker"] = "ok" if partitions else "no subscriptions topic"
    except Exception as exc:
        checks["broker"] = f"unreachable ({exc.__class__.__name__})"
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await asyncio.to_thread(queries.ping, backend.engine)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable ({exc.__class__.__name__})"
    ready = all(value == "ok" for value in checks.values())
    return _json(
        m.Health(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503
    )


MACHINE_ROUTES = [
    Route(
        "GET",
        "/api/openapi.json",
        openapi,
        operation(
            "This document",
            responses={
                "200": {
                    "description": "OpenAPI 3.1.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        ),
    ),
    Route(
        "GET",
        "/healthz",
        healthz,
        operation("The process is up", responses={"200": json_reply(m.Health, "Up.")}),
    ),
    Route(
        "GET",
        "/readyz",
        readyz,
        operation(
            "Broker and database reachable",
            responses={
                "200": json_reply(m.Health, "Ready."),
                "503": json_reply(m.Health, "Not ready; checks say what is missing."),
            },
        ),
    ),
]

ROUTES = [*PUBLIC_ROUTES, *ADMIN_ROUTES, *MACHINE_ROUTES]
