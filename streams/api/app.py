"""``POST /api/subscriptions`` and health endpoints.

A subscription is published to the compacted ``subscriptions`` topic (the source of truth
the stream workers read), on the partition of its product, and acknowledged by the broker
before the client gets its 201.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer
from email_validator import EmailNotValidError, validate_email
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pricewatch.contract.records import Subscription
from pricewatch.contract.topics import SUBSCRIPTIONS
from pricewatch.ids import canonical_url, partition_for, product_id_for, subscription_id_for
from pricewatch.kafka import make_producer
from pricewatch.settings import Settings
from producers.urlguard import UrlRefused, check_url

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
api_requests = Counter(
    "pricewatch_api_requests_total", "API requests by route and status.", ["route", "status"]
)

SETTINGS_KEY = web.AppKey("settings", Settings)
PRODUCER_KEY = web.AppKey("producer", AIOKafkaProducer)


class SubscribeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str = Field(max_length=254)
    url: str = Field(max_length=2048)
    target_price: Decimal | None = Field(default=None, gt=0, max_digits=18, decimal_places=6)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        try:
            return validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            check_url(value)
        except UrlRefused as exc:
            raise ValueError(str(exc)) from None
        return canonical_url(value)


def _problem(status: int, title: str, errors: list[dict[str, Any]] | None = None) -> web.Response:
    body: dict[str, Any] = {"title": title, "status": status}
    if errors is not None:
        body["errors"] = errors
    return web.json_response(body, status=status)


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors()
    ]


async def subscribe(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    try:
        payload = await request.json()
    except ValueError:
        return _problem(400, "Body must be a JSON object")
    try:
        body = SubscribeRequest.model_validate(payload)
    except ValidationError as exc:
        return _problem(422, "Invalid subscription", _field_errors(exc))

    product_id = product_id_for(body.url)
    subscription = Subscription(
        subscription_id=subscription_id_for(body.email, product_id),
        email=body.email,
        product_id=product_id,
        url=body.url,
        target_price=body.target_price,
        active=True,
        created_at=datetime.now(UTC),
    )
    producer = request.app[PRODUCER_KEY]
    await producer.send_and_wait(
        settings.topic(SUBSCRIPTIONS),
        key=subscription.subscription_id.encode(),
        value=subscription.model_dump_json().encode(),
        # Co-partitioned with the product's observations and events (see Subscription).
        partition=partition_for(product_id, settings.topic_partitions),
    )
    log.info("subscription %s for product %s", subscription.subscription_id, product_id)
    return web.json_response(
        {
            "subscription_id": subscription.subscription_id,
            "product_id": product_id,
            "email": subscription.email,
            "url": subscription.url,
            "target_price": None if body.target_price is None else str(body.target_price),
        },
        status=201,
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def count_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        api_requests.labels(route=route, status=str(exc.status)).inc()
        raise
    api_requests.labels(route=route, status=str(response.status)).inc()
    return response


def create_api_app(settings: Settings, producer: AIOKafkaProducer) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[count_requests])
    app[SETTINGS_KEY] = settings
    app[PRODUCER_KEY] = producer
    app.router.add_post("/api/subscriptions", subscribe)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def run_api(settings: Settings, stop: asyncio.Event) -> None:
    producer = make_producer(settings)
    await producer.start()
    runner = web.AppRunner(create_api_app(settings, producer), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.api_host, settings.api_port)
    await site.start()
    log.info("API on http://%s:%d", settings.api_host, settings.api_port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await producer.stop()
