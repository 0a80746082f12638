"""Server-rendered pages for people: subscribe, check your inbox, verified, manage (with a
price-history chart per product), unsubscribe. Plain HTML forms: no JavaScript needed.

They call the same services as the JSON API (``api.services``); only the rendering differs.
Every page is listed in ``ROUTES`` with its OpenAPI operation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError

from api.chart import price_chart_svg
from api.context import client_address, run_in_background, services
from api.models import (
    ChannelAdd,
    ChannelEdit,
    ManageLinkRequest,
    SubscribeRequest,
    SubscriptionEdit,
)
from api.problems import ApiProblem
from api.routing import (
    CHANNEL_ID,
    COMMON,
    SUBSCRIPTION_ID,
    TOKEN,
    Route,
    form_body,
    html,
    operation,
)
from api.services import Services
from api.services.base import ACCOUNT_REQUESTS
from pricewatch.channels import ChannelKind
from pricewatch.links import (
    CHANNEL_CONFIRM_PAGE,
    CONFIRM_PAGE,
    MANAGE_PAGE,
    UNSUBSCRIBE_API,
    UNSUBSCRIBE_PAGE,
    VERIFY_PAGE,
    manage_link,
)
from pricewatch.tokens import TokenPurpose
from pricewatch.wording import describe_wants, format_money

_FLAGS = (
    "notify_any_drop",
    "notify_price_increase",
    "notify_back_in_stock",
    "notify_sold_out",
    "notify_removed",
)
_AMOUNTS = ("target_price", "drop_percent", "min_change_amount", "min_change_percent")


@cache
def _templates() -> Environment:
    return Environment(
        loader=PackageLoader("api", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
    )


def page(template: str, status: int = 200, **context: Any) -> web.Response:
    html = _templates().get_template(template).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def message(
    title: str,
    *lines: str,
    status: int = 200,
    link: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    role: str | None = None,
) -> web.Response:
    return page("message.html", status, title=title, lines=lines, link=link, form=form, role=role)


def problem_page(problem: ApiProblem) -> web.Response:
    lines = [problem.title]
    if problem.reason == "expired":
        lines.append("Ask for a new link from the front page.")
    response = message(
        "Something went wrong" if problem.status >= 500 else "That did not work",
        *lines,
        status=problem.status,
        link={"href": "/", "text": "Back to Pricewatch"},
        role="alert",
    )
    response.headers.update(problem.headers)
    return response


def _form_values(form: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in ("email", "url", "currency", *_AMOUNTS):
        raw = str(form.get(name, "")).strip()
        values[name] = raw or None
    for flag in _FLAGS:
        values[flag] = flag in form
    return values


def _errors_by_field(exc: ValidationError) -> dict[str, str]:
    out: dict[str, str] = {}
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "body"
        out.setdefault(field, err["msg"])
    return out


async def home(request: web.Request) -> web.Response:
    return page("subscribe.html", title="Watch a price", values=_form_values({}), errors={})


async def subscribe_form(request: web.Request) -> web.Response:
    svc = services(request)
    form = await request.post()
    values = _form_values(form)
    try:
        svc.backend.limit_address(client_address(request))
        body = SubscribeRequest.model_validate({k: v for k, v in values.items() if v is not None})
        record = await svc.subscriptions.accept(body)
        # The address's own part after the answer (api.json_routes.subscribe).
        run_in_background(request.app, svc.subscriptions.carry_out(body, record))
        ACCOUNT_REQUESTS.labels("subscribe").inc()
    except ValidationError as exc:
        return page(
            "subscribe.html",
            422,
            title="Watch a price",
            values=values,
            errors=_errors_by_field(exc),
        )
    except ApiProblem as problem:
        if problem.status == 422 and problem.errors:
            errors = {e["field"]: e["message"] for e in problem.errors}
            return page("subscribe.html", 422, title="Watch a price", values=values, errors=errors)
        raise
    # The same page for every address: whether it is known shows only in its mailbox.
    return message(
        "Check your inbox",
        f"We sent a link to {record.email}.",
        "Follow it to start alerts about this product. Nothing is sent or changed until you do.",
        role="status",
    )


async def verify_page(request: web.Request) -> web.Response:
    # A button, not an action on GET: mail scanners open the links in emails, and such a
    # visit must not start alerts somebody else asked for.
    token = request.query.get("token")
    email, subscriptions = await services(request).accounts.verification(token)
    return page(
        "confirm.html",
        title="Confirm your address",
        intro=(
            f"Confirm {email} to start these alerts:"
            if subscriptions
            else f"Confirm {email} for Pricewatch alerts."
        ),
        products=[row["url"] for row in subscriptions],
        wants=[],
        action=f"{VERIFY_PAGE}?{_query(token)}",
        button="Confirm my address",
    )


async def verify_form(request: web.Request) -> web.Response:
    svc = services(request)
    result = await svc.accounts.verify(request.query.get("token"))
    return message(
        "Address confirmed",
        f"Thank you: alerts for {result.email} are on "
        f"({result.subscriptions} subscription{'s' if result.subscriptions != 1 else ''}).",
        link=_manage_link(svc, result.email),
        role="status",
    )


def _manage_link(svc: Services, email: str) -> dict[str, str]:
    # Following the link proved the address: hand over its manage link right away.
    manage = manage_link(svc.backend.settings, email, issued_at=svc.backend.clock())
    return {"href": manage, "text": "See and change your subscriptions"}


async def confirm_page(request: web.Request) -> web.Response:
    token = request.query.get("token")
    wanted = await services(request).subscriptions.confirmation(token)
    return page(
        "confirm.html",
        title="Start this alert?",
        intro=f"Alerts to {wanted.email} about this product:",
        products=[wanted.url],
        wants=describe_wants(wanted),
        action=f"{CONFIRM_PAGE}?{_query(token)}",
        button="Start this alert",
    )


async def confirm_form(request: web.Request) -> web.Response:
    svc = services(request)
    started = await svc.subscriptions.confirm(request.query.get("token"))
    return message(
        "Alert started",
        f"Pricewatch now watches {started.url} for {started.email}.",
        link=_manage_link(svc, started.email),
        role="status",
    )


def _plain(amount: Decimal | None) -> str | None:
    """``1225.000000`` (numeric(18,6) from PostgreSQL) as a person types it: ``1225``."""
    return None if amount is None else format(amount.normalize(), "f")


def _money(amount: Any, currency: str | None) -> str | None:
    return None if amount is None else format_money(amount, currency)


async def manage_page(request: web.Request) -> web.Response:
    svc = services(request)
    token = request.query.get("token")
    view = await svc.accounts.manage_view(token)
    items = []
    now = datetime.now(UTC)
    for sub in view.subscriptions:
        history = await svc.accounts.price_history(token, sub.product_id)
        points = [(p.observed_at, p.price) for p in history.prices if p.price is not None]
        values = {
            **{name: _plain(getattr(sub, name)) for name in _AMOUNTS},
            **{flag: getattr(sub, flag) for flag in _FLAGS},
        }
        items.append(
            {
                "sub": sub,
                "fields": values,
                "price_now": _money(sub.product.current_price, sub.product.currency),
                "chart": price_chart_svg(
                    points,
                    title=f"Price history of {sub.product.title or sub.url}",
                    now=now,
                    currency=sub.product.currency,
                ),
            }
        )
    notice = _NOTICES.get(
        request.query.get("saved", ""), "Saved." if request.query.get("saved") else None
    )
    return page(
        "manage.html",
        title="Your subscriptions",
        view=view,
        items=items,
        token=token,
        notice=notice,
        usable_channels=[c for c in view.channels if c.status != "pending"],
        channel_forms=CHANNEL_FORMS,
    )


async def edit_form(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    token = request.query.get("token")
    form = await request.post()
    values = _form_values(form)
    changes: dict[str, Any] = {
        **{name: values[name] for name in _AMOUNTS},
        "active": "active" in form,
        **{flag: values[flag] for flag in _FLAGS},
    }
    if "channels_shown" in form:
        changes["channels"] = (
            None if "channels_all" in form else [str(c) for c in form.getall("channel", [])]
        )
    try:
        edit = SubscriptionEdit.model_validate(changes)
        await svc.subscriptions.edit(token, request.match_info["subscription_id"], edit)
    except ValidationError as exc:
        first = next(iter(_errors_by_field(exc).items()))
        raise ApiProblem(422, f"{first[0]}: {first[1]}") from None
    raise web.HTTPSeeOther(f"{MANAGE_PAGE}?{_query(token)}&saved=1")


_NOTICES = {
    "paused": "Channel paused: nothing goes there until you resume it.",
    "resumed": "Channel resumed.",
    "removed": "Channel removed.",
    "test": "The test message is on its way again.",
}

# The add-a-channel forms of the manage page: one per kind, the fields of api.models.ChannelAdd.
CHANNEL_FORMS: list[dict[str, Any]] = [
    {
        "kind": "webhook",
        "title": "a webhook",
        "fields": [{"name": "url", "label": "Webhook URL", "placeholder": "https://..."}],
        "hint": "Pricewatch POSTs each alert as a signed CloudEvent (JSON).",
    },
    {
        "kind": "ntfy",
        "title": "ntfy",
        "fields": [
            {"name": "topic", "label": "Topic", "placeholder": "my-price-alerts"},
            {"name": "server", "label": "Server (optional)", "placeholder": "https://ntfy.sh"},
            {"name": "token", "label": "Access token (optional)", "placeholder": "tk_..."},
        ],
        "hint": None,
    },
    {
        "kind": "telegram",
        "title": "Telegram",
        "fields": [
            {"name": "bot_token", "label": "Bot token", "placeholder": "123456789:AA..."},
            {"name": "chat_id", "label": "Chat id", "placeholder": "123456789"},
        ],
        "hint": "Create a bot with @BotFather and send it a message first.",
    },
    {
        "kind": "discord",
        "title": "Discord",
        "fields": [
            {
                "name": "webhook_url",
                "label": "Discord webhook URL",
                "placeholder": "https://discord.com/api/webhooks/...",
            }
        ],
        "hint": None,
    },
    {
        "kind": "slack",
        "title": "Slack",
        "fields": [
            {
                "name": "webhook_url",
                "label": "Slack incoming-webhook URL",
                "placeholder": "https://hooks.slack.com/services/...",
            }
        ],
        "hint": None,
    },
    {
        "kind": "apprise",
        "title": "another service (Apprise URL)",
        "fields": [{"name": "url", "label": "Apprise URL", "placeholder": "gotify://..."}],
        "hint": "Any service Apprise knows whose kind the administrator allows.",
    },
]


async def add_channel_form(request: web.Request) -> web.Response:
    svc = services(request)
    token = request.query.get("token")
    form = await request.post()
    fields = {
        name: str(form[name]).strip() or None for name in ChannelAdd.model_fields if name in form
    }
    try:
        svc.backend.limit_address(client_address(request))
        body = ChannelAdd.model_validate(fields)
    except ValidationError as exc:
        first = next(iter(_errors_by_field(exc).items()))
        raise ApiProblem(422, f"{first[0]}: {first[1]}") from None
    try:
        added = await svc.channels.add(token, body)
    except ApiProblem as problem:
        if problem.status == 422 and problem.errors:
            first_error = problem.errors[0]
            raise ApiProblem(
                422, f"{first_error['field']}: {first_error['message']}", headers=problem.headers
            ) from None
        raise
    return page(
        "channel_added.html",
        201,
        title="Channel added",
        channel=added,
        secret=added.signing_secret,
        back=f"{MANAGE_PAGE}?{_query(token)}",
    )


async def channel_action_form(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    token = request.query.get("token")
    channel_id = request.match_info["channel_id"]
    action = str((await request.post()).get("action", ""))
    if action in ("pause", "resume"):
        await svc.channels.change(token, channel_id, ChannelEdit(paused=action == "pause"))
        done = "paused" if action == "pause" else "resumed"
    elif action == "remove":
        await svc.channels.remove(token, channel_id)
        done = "removed"
    elif action == "test":
        svc.backend.limit_address(client_address(request))
        await svc.channels.resend_test(token, channel_id)
        done = "test"
    else:
        raise ApiProblem(422, "action: pause, resume, remove or test")
    raise web.HTTPSeeOther(f"{MANAGE_PAGE}?{_query(token)}&saved={done}")


async def channel_confirm_page(request: web.Request) -> web.Response:
    # A button, not an action on GET: link previews in chat apps open links too.
    token = request.query.get("token")
    row = await services(request).channels.confirmation(token)
    return page(
        "confirm.html",
        title="Confirm this channel?",
        intro=f"Send {row['email']}'s Pricewatch alerts to this {row['kind']} channel:",
        products=[row["target"]],
        wants=[],
        action=f"{CHANNEL_CONFIRM_PAGE}?{_query(token)}",
        button="Confirm this channel",
    )


async def channel_confirm_form(request: web.Request) -> web.Response:
    confirmed = await services(request).channels.confirm(request.query.get("token"))
    lines = ["Alerts go to this channel now."]
    if confirmed.status == "paused":
        lines = ["Its owner paused this channel: alerts go there once it is resumed."]
    return message(
        "Channel confirmed", f"{confirmed.kind}: {confirmed.target}", *lines, role="status"
    )


def _query(token: str | None) -> str:
    return urlencode({"token": token or ""})


async def unsubscribe_page(request: web.Request) -> web.Response:
    # A confirmation button, not an action on GET: mail scanners open links in emails.
    token = request.query.get("token")
    services(request).backend.claims(token, TokenPurpose.UNSUBSCRIBE)
    return message(
        "Stop these alerts?",
        "You will get no more emails about this.",
        form={"action": f"{UNSUBSCRIBE_PAGE}?{_query(token)}", "button": "Unsubscribe"},
    )


async def unsubscribe_form(request: web.Request) -> web.Response:
    stopped = await services(request).subscriptions.unsubscribe(request.query.get("token"))
    return message(
        "Unsubscribed",
        "Done: no more alerts about this."
        if stopped
        else "Nothing to stop: these alerts were already off.",
        link={"href": "/", "text": "Watch another product"},
        role="status",
    )


async def manage_link_form(request: web.Request) -> web.Response:
    svc = services(request)
    form = await request.post()
    try:
        svc.backend.limit_address(client_address(request))
        body = ManageLinkRequest.model_validate({"email": str(form.get("email", ""))})
        # Not against the address's own limit (see api.json_routes.manage_link).
    except ValidationError as exc:
        return page(
            "subscribe.html",
            422,
            title="Watch a price",
            values=_form_values({}),
            errors={"body": "That email address is not valid: " + _errors_by_field(exc)["email"]},
        )
    run_in_background(request.app, svc.accounts.send_manage_link(body.email))
    ACCOUNT_REQUESTS.labels("manage_link").inc()
    return message(
        "Check your inbox",
        "If this address has subscriptions, a link to them is on its way.",
        role="status",
    )


_STR = {"type": "string", "maxLength": 2048}
_FLAG = {"type": "string", "enum": ["on"]}
_SUBSCRIBE_FIELDS = {
    "email": _STR,
    "url": _STR,
    "currency": _STR,
    **dict.fromkeys(_AMOUNTS, _STR),
    **dict.fromkeys(_FLAGS, _FLAG),
}
_BAD_LINK = html("Invalid or expired link.")
_NO_TOKEN = html("No token.")
_LATER = html("Try again later.")

ROUTES = [
    Route("GET", "/", home, operation("Page: subscribe form", responses={"200": html("Form.")})),
    Route(
        "POST",
        "/subscribe",
        subscribe_form,
        operation(
            "Page: subscribe form submission",
            body=form_body(_SUBSCRIBE_FIELDS, ["email", "url"]),
            responses={
                "200": html("Check your inbox (the same for every address)."),
                "413": COMMON["413"],
                "422": html("The form with messages."),
                "429": html("Too many requests."),
                "503": _LATER,
            },
        ),
    ),
    Route(
        "GET",
        VERIFY_PAGE,
        verify_page,
        operation(
            "Page: what confirming the address starts, and a button to do it",
            parameters=[TOKEN],
            responses={
                "200": html("A confirmation button (a GET changes nothing)."),
                "403": _BAD_LINK,
                "404": html("No such address."),
                "422": _NO_TOKEN,
                "503": _LATER,
            },
        ),
    ),
    Route(
        "POST",
        VERIFY_PAGE,
        verify_form,
        operation(
            "Page: confirm an address",
            parameters=[TOKEN],
            responses={
                "200": html("Confirmed, with a manage link."),
                "403": _BAD_LINK,
                "404": html("No such address."),
                "422": _NO_TOKEN,
                "503": _LATER,
            },
        ),
    ),
    Route(
        "GET",
        CONFIRM_PAGE,
        confirm_page,
        operation(
            "Page: the subscription a confirmation link starts, and a button",
            parameters=[TOKEN],
            responses={
                "200": html("A confirmation button (a GET changes nothing)."),
                "403": _BAD_LINK,
                "422": html("No token, or the request is no longer valid."),
            },
        ),
    ),
    Route(
        "POST",
        CONFIRM_PAGE,
        confirm_form,
        operation(
            "Page: start the subscription",
            parameters=[TOKEN],
            responses={
                "200": html("Started, with a manage link."),
                "403": _BAD_LINK,
                "404": html("No such address."),
                "409": html("The subscription changed after the link was sent."),
                "422": html("No token, or the request is no longer valid."),
                "503": _LATER,
            },
        ),
    ),
    Route(
        "GET",
        MANAGE_PAGE,
        manage_page,
        operation(
            "Page: one's subscriptions, with price-history charts and edit forms",
            parameters=[TOKEN],
            responses={
                "200": html("The subscriptions."),
                "403": _BAD_LINK,
                "422": _NO_TOKEN,
                "503": _LATER,
            },
        ),
    ),
    Route(
        "POST",
        MANAGE_PAGE + "/subscriptions/{subscription_id}",
        edit_form,
        operation(
            "Page: save an edited subscription (then back to /manage)",
            parameters=[SUBSCRIPTION_ID, TOKEN],
            body=form_body(
                {
                    **_SUBSCRIBE_FIELDS,
                    "active": _FLAG,
                    "channels_shown": _FLAG,
                    "channels_all": _FLAG,
                    "channel": {"type": "string", "maxLength": 64},
                },
                [],
            ),
            responses={
                "303": {"description": "Saved: to /manage."},
                "403": _BAD_LINK,
                "404": html("Not a subscription of this address."),
                "413": COMMON["413"],
                "422": html("Invalid change, or no token."),
                "503": _LATER,
            },
        ),
    ),
    Route(
        "POST",
        MANAGE_PAGE + "/channels",
        add_channel_form,
        operation(
            "Page: add a channel (then a page with its signing secret, for a webhook)",
            parameters=[TOKEN],
            body=form_body(
                {
                    "kind": {"type": "string", "enum": [k.value for k in ChannelKind]},
                    **{name: _STR for name in ChannelAdd.model_fields if name != "kind"},
                },
                ["kind"],
            ),
            responses={
                "201": html("Added; a test message with a confirmation link is on its way."),
                "403": _BAD_LINK,
                "409": html("Added already, or too many channels."),
                "413": COMMON["413"],
                "422": html("Invalid channel, or no token."),
                "429": html("Too many requests."),
                "503": _LATER,
            },
        ),
    ),
    Route(
        "POST",
        MANAGE_PAGE + "/channels/{channel_id}",
        channel_action_form,
        operation(
            "Page: pause, resume, remove a channel or send its test message again",
            parameters=[CHANNEL_ID, TOKEN],
            body=form_body(
                {"action": {"type": "string", "enum": ["pause", "resume", "remove", "test"]}},
                ["action"],
            ),
            responses={
                "303": {"description": "Done: to /manage."},
                "403": _BAD_LINK,
                "404": html("Not a channel of this address."),
                "409": html("Not possible in the channel's state."),
                "413": COMMON["413"],
                "422": html("No such action, or no token."),
                "429": html("Too many requests."),
                "503": _LATER,
            },
        ),
    ),
    Route(
        "GET",
        CHANNEL_CONFIRM_PAGE,
        channel_confirm_page,
        operation(
            "Page: the channel a test message's link confirms, and a button",
            parameters=[TOKEN],
            responses={
                "200": html("A confirmation button (a GET changes nothing)."),
                "403": _BAD_LINK,
                "404": html("The channel was removed."),
                "422": _NO_TOKEN,
                "503": _LATER,
            },
        ),
    ),
    Route(
        "POST",
        CHANNEL_CONFIRM_PAGE,
        channel_confirm_form,
        operation(
            "Page: confirm a channel",
            parameters=[TOKEN],
            responses={
                "200": html("Confirmed."),
                "403": _BAD_LINK,
                "404": html("The channel was removed."),
                "422": _NO_TOKEN,
                "503": _LATER,
            },
        ),
    ),
    Route(
        "GET",
        UNSUBSCRIBE_PAGE,
        unsubscribe_page,
        operation(
            "Page: confirm unsubscribing",
            parameters=[TOKEN],
            responses={
                "200": html("A confirmation button."),
                "403": _BAD_LINK,
                "422": _NO_TOKEN,
            },
        ),
    ),
    Route(
        "GET",
        UNSUBSCRIBE_API,
        unsubscribe_page,
        operation(
            "Page: the List-Unsubscribe URL opened (not one-click): confirm unsubscribing",
            description="Mail scanners and link previews open this URL; only the one-click "
            "POST (or this page's button) stops anything.",
            parameters=[TOKEN],
            responses={
                "200": html("A confirmation button."),
                "403": _BAD_LINK,
                "422": _NO_TOKEN,
            },
        ),
    ),
    Route(
        "POST",
        UNSUBSCRIBE_PAGE,
        unsubscribe_form,
        operation(
            "Page: unsubscribe",
            parameters=[TOKEN],
            responses={
                "200": html("Unsubscribed."),
                "403": _BAD_LINK,
                "422": _NO_TOKEN,
                "503": _LATER,
            },
        ),
    ),
    Route(
        "POST",
        "/manage-link",
        manage_link_form,
        operation(
            "Page: email me a manage link",
            body=form_body({"email": _STR}, ["email"]),
            responses={
                "200": html("Check your inbox (same for any address)."),
                "413": COMMON["413"],
                "422": html("Not an email address."),
                "429": html("Too many requests."),
            },
        ),
    ),
]
