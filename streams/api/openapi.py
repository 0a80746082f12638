"""The OpenAPI 3.1 document of the API, built from the same pydantic models the handlers
use. A test checks that every route of the aiohttp router is here and nothing else is."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from pricewatch.settings import Settings
from pricewatch.tokens import MAX_TOKEN_CHARS
from streams.api import models as m

REF = "#/components/schemas/{model}"
_MODELS: tuple[type[BaseModel], ...] = (
    m.SubscribeRequest,
    m.SubscribeResponse,
    m.SubscriptionEdit,
    m.SubscriptionOut,
    m.ManageLinkRequest,
    m.ManageView,
    m.PriceHistory,
    m.VerifyResult,
    m.UnsubscribeResult,
    m.Accepted,
    m.WebsiteList,
    m.AdminWebsite,
    m.WebsiteCreate,
    m.WebsiteEdit,
    m.AdminProductList,
    m.AdminUserList,
    m.Problem,
    m.Health,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out = _json(m.Problem, description)
    if headers:
        out["headers"] = headers
    return out


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}}
TOKEN = {
    "name": "token",
    "in": "query",
    "required": True,
    "description": "The signed token of the link Pricewatch emailed.",
    "schema": {"type": "string", "maxLength": MAX_TOKEN_CHARS, "pattern": "^[A-Za-z0-9_.=-]*$"},
}
PAGING = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
]
ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]
ADMIN_ERRORS = {
    "401": _problem("No admin token."),
    "403": _problem("Wrong admin token."),
    "404": _problem("The admin API is off (no admin token configured), or no such item."),
}
TOKEN_ERRORS = {
    "403": _problem("The link is forged, for another purpose, or expired (reason: expired)."),
    "422": _problem("No token."),
}
COMMON = {
    "400": _problem("The body is not JSON."),
    "413": _problem("The body is larger than 16 KiB."),
    "503": _problem("The broker or the database is unreachable; try again."),
}


def _form(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "properties": properties, "required": required}
            }
        },
    }


_STR = {"type": "string", "maxLength": 2048}
_SUBSCRIBE_FORM = _form(
    {
        "email": _STR,
        "url": _STR,
        "target_price": _STR,
        "drop_percent": _STR,
        **{
            f: {"type": "string", "enum": ["on"]}
            for f in (
                "notify_any_drop",
                "notify_back_in_stock",
                "notify_sold_out",
                "notify_removed",
            )
        },
    },
    ["email", "url"],
)


def _paths() -> dict[str, dict[str, Any]]:
    def json_body(model: type[BaseModel]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}

    sub_id = {
        "name": "subscription_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "maxLength": 200},
    }
    product_id = {
        "name": "product_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "maxLength": 200},
    }
    website_id = {
        "name": "website_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
    unsubscribe = {
        "summary": "Stop one subscription, or all of an address (the token says which)",
        "parameters": [TOKEN],
        "responses": {
            "200": _json(m.UnsubscribeResult, "Stopped (0 when they already were)."),
            **TOKEN_ERRORS,
            "503": COMMON["503"],
        },
    }
    return {
        "/api/subscriptions": {
            "post": {
                "summary": "Ask to subscribe an email address to a product page",
                "description": "Nothing alerts until the address's owner follows the link "
                "emailed now: a new or unconfirmed address gets its verification email (one "
                "a day; its link starts all the address's subscriptions), a verified address "
                "a link that starts or changes this one subscription (until then its current "
                "subscriptions stay as they are). The answer is the same for every address. "
                "Asking again for the same product updates the same subscription.",
                "requestBody": json_body(m.SubscribeRequest),
                "responses": {
                    "201": _json(m.SubscribeResponse, "Accepted; verified is always false."),
                    "422": _problem("Invalid input, one message per field."),
                    "429": _problem("Too many calls from this address or email.", RETRY_AFTER),
                    **COMMON,
                },
            }
        },
        "/api/subscriptions/confirm": {
            "post": {
                "summary": "Start the subscription a confirmation email's link carries",
                "description": "Following it again changes nothing. A link older than a later "
                "change of the same subscription is refused with 409 (reason superseded).",
                "parameters": [TOKEN],
                "responses": {
                    "200": _json(m.SubscriptionOut, "Started (or already running as asked)."),
                    "404": _problem("No such address."),
                    "409": _problem("The subscription changed after the link was sent."),
                    "403": TOKEN_ERRORS["403"],
                    "422": _problem("No token, or the request no longer passes validation."),
                    "503": COMMON["503"],
                },
            }
        },
        "/api/verify": {
            "get": {
                "summary": "Confirm an address (the link of the verification email)",
                "parameters": [TOKEN],
                "responses": {
                    "200": _json(m.VerifyResult, "Verified; its subscriptions now alert."),
                    "404": _problem("No such address."),
                    **TOKEN_ERRORS,
                    "503": COMMON["503"],
                },
            }
        },
        "/api/unsubscribe": {
            "get": unsubscribe,
            "post": {
                **unsubscribe,
                "summary": "RFC 8058 one-click unsubscribe (body List-Unsubscribe=One-Click)",
            },
        },
        "/api/manage": {
            "get": {
                "summary": "The subscriptions of the address a manage link was sent to",
                "parameters": [TOKEN],
                "responses": {
                    "200": _json(m.ManageView, "The address's subscriptions."),
                    **TOKEN_ERRORS,
                    "503": COMMON["503"],
                },
            }
        },
        "/api/manage/subscriptions/{subscription_id}": {
            "patch": {
                "summary": "Change one's own subscription",
                "parameters": [sub_id, TOKEN],
                "requestBody": json_body(m.SubscriptionEdit),
                "responses": {
                    "200": _json(m.SubscriptionOut, "Changed and published."),
                    "404": _problem("Not a subscription of this address."),
                    **TOKEN_ERRORS,
                    "422": _problem("Invalid change, or no token."),
                    **COMMON,
                },
            }
        },
        "/api/manage/products/{product_id}/prices": {
            "get": {
                "summary": "Price history of a product the address watches",
                "parameters": [product_id, TOKEN],
                "responses": {
                    "200": _json(m.PriceHistory, "Oldest first (at most the newest 2000)."),
                    "404": _problem("Not a product this address watches."),
                    **TOKEN_ERRORS,
                    "503": COMMON["503"],
                },
            }
        },
        "/api/manage-link": {
            "post": {
                "summary": "Email a manage link to an address (same answer for any address)",
                "requestBody": json_body(m.ManageLinkRequest),
                "responses": {
                    "202": _json(m.Accepted, "Accepted."),
                    "422": _problem("Not an email address."),
                    "429": _problem("Too many calls.", RETRY_AFTER),
                    "400": COMMON["400"],
                    "413": COMMON["413"],
                },
            }
        },
        "/api/websites": {
            "get": {
                "summary": "What can be tracked",
                "responses": {
                    "200": _json(m.WebsiteList, "Websites with adapters."),
                    "503": COMMON["503"],
                },
            }
        },
        "/api/admin/websites": {
            "get": {
                "summary": "Every website with its adapter configuration",
                "security": ADMIN,
                "responses": {
                    "200": {
                        "description": "Websites.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "websites": {"type": "array", "items": _ref(m.AdminWebsite)}
                                    },
                                }
                            }
                        },
                    },
                    **ADMIN_ERRORS,
                    "503": COMMON["503"],
                },
            },
            "post": {
                "summary": "Add a website",
                "security": ADMIN,
                "requestBody": json_body(m.WebsiteCreate),
                "responses": {
                    "201": _json(m.AdminWebsite, "Added."),
                    "409": _problem("A website with this host exists."),
                    "422": _problem("Invalid website."),
                    **ADMIN_ERRORS,
                    **COMMON,
                },
            },
        },
        "/api/admin/websites/{website_id}": {
            "patch": {
                "summary": "Edit a website's adapter configuration, interval, or pause it",
                "security": ADMIN,
                "parameters": [website_id],
                "requestBody": json_body(m.WebsiteEdit),
                "responses": {
                    "200": _json(m.AdminWebsite, "Changed."),
                    "422": _problem("Invalid change."),
                    **ADMIN_ERRORS,
                    **COMMON,
                },
            }
        },
        "/api/admin/products": {
            "get": {
                "summary": "Tracked products",
                "security": ADMIN,
                "parameters": PAGING,
                "responses": {
                    "200": _json(m.AdminProductList, "Products."),
                    "422": _problem("Invalid paging."),
                    **ADMIN_ERRORS,
                    "503": COMMON["503"],
                },
            }
        },
        "/api/admin/users": {
            "get": {
                "summary": "Users with their subscription counts",
                "security": ADMIN,
                "parameters": PAGING,
                "responses": {
                    "200": _json(m.AdminUserList, "Users."),
                    "422": _problem("Invalid paging."),
                    **ADMIN_ERRORS,
                    "503": COMMON["503"],
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "The process is up",
                "responses": {"200": _json(m.Health, "Up.")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Broker and database reachable",
                "responses": {
                    "200": _json(m.Health, "Ready."),
                    "503": _json(m.Health, "Not ready; checks say what is missing."),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        # Pages for people (HTML).
        "/": {"get": {"summary": "Page: subscribe form", "responses": {"200": _html("Form.")}}},
        "/subscribe": {
            "post": {
                "summary": "Page: subscribe form submission",
                "requestBody": _SUBSCRIBE_FORM,
                "responses": {
                    "200": _html("Check your inbox (the same for every address)."),
                    "413": COMMON["413"],
                    "422": _html("The form with messages."),
                    "429": _html("Too many requests."),
                    "503": _html("Try again later."),
                },
            }
        },
        "/verify": {
            "get": {
                "summary": "Page: what confirming the address starts, and a button to do it",
                "parameters": [TOKEN],
                "responses": {
                    "200": _html("A confirmation button (a GET changes nothing)."),
                    "403": _html("Invalid or expired link."),
                    "404": _html("No such address."),
                    "422": _html("No token."),
                    "503": _html("Try again later."),
                },
            },
            "post": {
                "summary": "Page: confirm an address",
                "parameters": [TOKEN],
                "responses": {
                    "200": _html("Confirmed, with a manage link."),
                    "403": _html("Invalid or expired link."),
                    "404": _html("No such address."),
                    "422": _html("No token."),
                    "503": _html("Try again later."),
                },
            },
        },
        "/confirm": {
            "get": {
                "summary": "Page: the subscription a confirmation link starts, and a button",
                "parameters": [TOKEN],
                "responses": {
                    "200": _html("A confirmation button (a GET changes nothing)."),
                    "403": _html("Invalid or expired link."),
                    "422": _html("No token, or the request is no longer valid."),
                },
            },
            "post": {
                "summary": "Page: start the subscription",
                "parameters": [TOKEN],
                "responses": {
                    "200": _html("Started, with a manage link."),
                    "403": _html("Invalid or expired link."),
                    "404": _html("No such address."),
                    "409": _html("The subscription changed after the link was sent."),
                    "422": _html("No token, or the request is no longer valid."),
                    "503": _html("Try again later."),
                },
            },
        },
        "/manage": {
            "get": {
                "summary": "Page: one's subscriptions, with price-history charts and edit forms",
                "parameters": [TOKEN],
                "responses": {
                    "200": _html("The subscriptions."),
                    "403": _html("Invalid or expired link."),
                    "422": _html("No token."),
                    "503": _html("Try again later."),
                },
            }
        },
        "/manage/subscriptions/{subscription_id}": {
            "post": {
                "summary": "Page: save an edited subscription (then back to /manage)",
                "parameters": [sub_id, TOKEN],
                "requestBody": _form(
                    {
                        **_SUBSCRIBE_FORM["content"]["application/x-www-form-urlencoded"]["schema"][
                            "properties"
                        ],
                        "active": {"type": "string", "enum": ["on"]},
                    },
                    [],
                ),
                "responses": {
                    "303": {"description": "Saved: to /manage."},
                    "403": _html("Invalid or expired link."),
                    "404": _html("Not a subscription of this address."),
                    "413": COMMON["413"],
                    "422": _html("Invalid change, or no token."),
                    "503": _html("Try again later."),
                },
            }
        },
        "/unsubscribe": {
            "get": {
                "summary": "Page: confirm unsubscribing",
                "parameters": [TOKEN],
                "responses": {
                    "200": _html("A confirmation button."),
                    "403": _html("Invalid or expired link."),
                    "422": _html("No token."),
                },
            },
            "post": {
                "summary": "Page: unsubscribe",
                "parameters": [TOKEN],
                "responses": {
                    "200": _html("Unsubscribed."),
                    "403": _html("Invalid or expired link."),
                    "422": _html("No token."),
                    "503": _html("Try again later."),
                },
            },
        },
        "/manage-link": {
            "post": {
                "summary": "Page: email me a manage link",
                "requestBody": _form({"email": _STR}, ["email"]),
                "responses": {
                    "200": _html("Check your inbox (same for any address)."),
                    "413": COMMON["413"],
                    "422": _html("Not an email address."),
                    "429": _html("Too many requests."),
                },
            }
        },
    }


@cache
def _components() -> dict[str, Any]:
    requests = {m.SubscribeRequest, m.SubscriptionEdit, m.ManageLinkRequest}
    requests |= {m.WebsiteCreate, m.WebsiteEdit}
    _, schemas = models_json_schema(
        [(model, "validation" if model in requests else "serialization") for model in _MODELS],
        ref_template=REF,
    )
    return dict(schemas.get("$defs", {}))


# Any request: aiohttp refuses a malformed one (a request line or header over 8 KiB,
# broken encoding) before the app sees it, as plain text.
MALFORMED = {
    "description": "Malformed HTTP request (e.g. a request line longer than 8 KiB).",
    "content": {
        "application/json": {"schema": _ref(m.Problem)},
        "text/plain": {"schema": {"type": "string"}},
    },
}


def _with_common_responses(paths: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    for item in paths.values():
        for operation in item.values():
            operation["responses"].setdefault("400", MALFORMED)
    return paths


def openapi_document(settings: Settings) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Pricewatch API",
            "version": "1",
            "description": "Subscribe to product prices; manage subscriptions through signed "
            "links emailed to you. Errors are problem documents with per-field messages.",
        },
        "servers": [{"url": settings.api_base_url}],
        "paths": _with_common_responses(_paths()),
        "components": {
            "schemas": _components(),
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
        },
    }
