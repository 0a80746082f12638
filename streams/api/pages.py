"""Server-rendered pages for people: subscribe, check your inbox, verified, manage (with a
price-history chart per product), unsubscribe. Plain HTML forms: no JavaScript needed.

They call the same ``Service`` as the JSON API; only the rendering differs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError

from pricewatch.links import CONFIRM_PAGE, MANAGE_PAGE, UNSUBSCRIBE_PAGE, VERIFY_PAGE, manage_link
from pricewatch.tokens import TokenPurpose
from sinks.email.render import describe_wants, format_money
from streams.api.chart import price_chart_svg
from streams.api.models import ManageLinkRequest, SubscribeRequest, SubscriptionEdit
from streams.api.service import ApiProblem, Service

_FLAGS = ("notify_any_drop", "notify_back_in_stock", "notify_sold_out", "notify_removed")


@cache
def _templates() -> Environment:
    return Environment(
        loader=PackageLoader("streams.api", "templates"),
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


def _svc(request: web.Request) -> Service:
    from streams.api.app import SERVICE_KEY

    return request.app[SERVICE_KEY]


def _form_values(form: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in ("email", "url", "target_price", "currency", "drop_percent"):
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
    from streams.api.app import client_address

    svc = _svc(request)
    form = await request.post()
    values = _form_values(form)
    try:
        svc.limit_address(client_address(request))
        body = SubscribeRequest.model_validate({k: v for k, v in values.items() if v is not None})
        record = await svc.subscribe(body)
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
    email, subscriptions = await _svc(request).verification(token)
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
    svc = _svc(request)
    result = await svc.verify(request.query.get("token"))
    return message(
        "Address confirmed",
        f"Thank you: alerts for {result.email} are on "
        f"({result.subscriptions} subscription{'s' if result.subscriptions != 1 else ''}).",
        link=_manage_link(svc, result.email),
        role="status",
    )


def _manage_link(svc: Service, email: str) -> dict[str, str]:
    # Following the link proved the address: hand over its manage link right away.
    manage = manage_link(svc.settings, email, issued_at=svc.clock())
    return {"href": manage, "text": "See and change your subscriptions"}


async def confirm_page(request: web.Request) -> web.Response:
    token = request.query.get("token")
    wanted = await _svc(request).confirmation(token)
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
    svc = _svc(request)
    started = await svc.confirm(request.query.get("token"))
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
    svc = _svc(request)
    token = request.query.get("token")
    view = await svc.manage_view(token)
    items = []
    now = datetime.now(UTC)
    for sub in view.subscriptions:
        history = await svc.price_history(token, sub.product_id)
        points = [(p.observed_at, p.price) for p in history.prices if p.price is not None]
        values = {
            "target_price": _plain(sub.target_price),
            "drop_percent": _plain(sub.drop_percent),
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
    notice = "Saved." if request.query.get("saved") else None
    return page(
        "manage.html",
        title="Your subscriptions",
        view=view,
        items=items,
        token=token,
        notice=notice,
    )


async def edit_form(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    token = request.query.get("token")
    form = await request.post()
    values = _form_values(form)
    changes: dict[str, Any] = {
        "target_price": values["target_price"],
        "drop_percent": values["drop_percent"],
        "active": "active" in form,
        **{flag: values[flag] for flag in _FLAGS},
    }
    try:
        edit = SubscriptionEdit.model_validate(changes)
        await svc.edit(token, request.match_info["subscription_id"], edit)
    except ValidationError as exc:
        first = next(iter(_errors_by_field(exc).items()))
        raise ApiProblem(422, f"{first[0]}: {first[1]}") from None
    raise web.HTTPSeeOther(f"{MANAGE_PAGE}?{_query(token)}&saved=1")


def _query(token: str | None) -> str:
    from urllib.parse import urlencode

    return urlencode({"token": token or ""})


async def unsubscribe_page(request: web.Request) -> web.Response:
    # A confirmation button, not an action on GET: mail scanners open links in emails.
    token = request.query.get("token")
    _svc(request).claims(token, TokenPurpose.UNSUBSCRIBE)
    return message(
        "Stop these alerts?",
        "You will get no more emails about this.",
        form={"action": f"{UNSUBSCRIBE_PAGE}?{_query(token)}", "button": "Unsubscribe"},
    )


async def unsubscribe_form(request: web.Request) -> web.Response:
    stopped = await _svc(request).unsubscribe(request.query.get("token"))
    return message(
        "Unsubscribed",
        "Done: no more alerts about this."
        if stopped
        else "Nothing to stop: these alerts were already off.",
        link={"href": "/", "text": "Watch another product"},
        role="status",
    )


async def manage_link_form(request: web.Request) -> web.Response:
    from streams.api.app import client_address, run_in_background

    svc = _svc(request)
    form = await request.post()
    try:
        svc.limit_address(client_address(request))
        body = ManageLinkRequest.model_validate({"email": str(form.get("email", ""))})
        svc.limit_email(body.email)
    except ValidationError as exc:
        return page(
            "subscribe.html",
            422,
            title="Watch a price",
            values=_form_values({}),
            errors={"body": "That email address is not valid: " + _errors_by_field(exc)["email"]},
        )
    run_in_background(request.app, svc.send_manage_link(body.email))
    return message(
        "Check your inbox",
        "If this address has subscriptions, a link to them is on its way.",
        role="status",
    )


PAGE_ROUTES = [
    ("GET", "/", home),
    ("POST", "/subscribe", subscribe_form),
    ("GET", VERIFY_PAGE, verify_page),
    ("POST", VERIFY_PAGE, verify_form),
    ("GET", CONFIRM_PAGE, confirm_page),
    ("POST", CONFIRM_PAGE, confirm_form),
    ("GET", MANAGE_PAGE, manage_page),
    ("POST", MANAGE_PAGE + "/subscriptions/{subscription_id}", edit_form),
    ("GET", UNSUBSCRIBE_PAGE, unsubscribe_page),
    ("POST", UNSUBSCRIBE_PAGE, unsubscribe_form),
    ("POST", "/manage-link", manage_link_form),
]


def add_page_routes(app: web.Application) -> None:
    for method, path, handler in PAGE_ROUTES:
        app.router.add_route(method, path, handler)
