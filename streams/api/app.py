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
from aiokafka.errors import KafkaError
from email_validator import EmailNotValidError, validate_email
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pricewatch.contract.records import Subscription
from pricewatch.contract.topics import SUBSCRIPTIONS
from pricewatch.ids import canonical_url, partition_for, product_id_for, subscription_id_for
from pricewatch.kafka import make_producer
from pricewatch.settings import Settings
from producers.urlguard import UrlRefused, check_resolved_host, check_url

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
    drop_percent: Decimal | None = Field(default=None, gt=0, lt=100, decimal_places=2)
    notify_any_drop: bool = False
    notify_back_in_stock: bool = False
    notify_sold_out: bool = False
    notify_removed: bool = False

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

    @model_validator(mode="after")
    def _wants_something(self) -> SubscribeRequest:
        if not (
            self.target_price is not None
            or self.drop_percent is not None
            or self.notify_any_drop
            or self.notify_back_in_stock
            or self.notify_sold_out
            or self.notify_removed
        ):
            raise ValueError(
                "say what to be told: target_price, drop_percent, notify_any_drop, "
                "notify_back_in_stock, notify_sold_out or notify_removed"
            )
        return self


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
    except web.HTTPRequestEntityTooLarge:
        return _problem(413, f"Body larger than {MAX_BODY_BYTES} bytes")
    except (ValueError, LookupError, RecursionError):
        # Not JSON, not in its declared charset (or an unknown one: LookupError), or
        # nested too deep for the parser (RecursionError): the client's fault, not a 500.
        return _problem(400, "Body must be a JSON object")
    try:
        body = SubscribeRequest.model_validate(payload)
    except ValidationError as exc:
        return _problem(422, "Invalid subscription", _field_errors(exc))

    try:
        await check_resolved_host(body.url, settings.allowed_private_host_set)
    except UrlRefused as exc:
        return _problem(422, "Invalid subscription", [{"field": "url", "message": str(exc)}])

    product_id = product_id_for(body.url)
    subscription = Subscription(
        subscription_id=subscription_id_for(body.email, product_id),
        email=body.email,
        product_id=product_id,
        url=body.url,
        target_price=body.target_price,
        drop_percent=body.drop_percent,
        notify_any_drop=body.notify_any_drop,
        notify_back_in_stock=body.notify_back_in_stock,
        notify_sold_out=body.notify_sold_out,
        notify_removed=body.notify_removed,
        active=True,
        created_at=datetime.now(UTC),
    )
    producer = request.app[PRODUCER_KEY]
    try:
        await producer.send_and_wait(
            settings.topic(SUBSCRIPTIONS),
            key=subscription.subscription_id.encode(),
            value=subscription.model_dump_json().encode(),
            # Co-partitioned with the product's observations and events (see Subscription).
            partition=partition_for(product_id, settings.topic_partitions),
        )
    except KafkaError as exc:
        log.warning("could not publish subscription: %r", exc)
        return _problem(503, "Subscriptions are unavailable right now; try again shortly")
    log.info("subscription %s for product %s", subscription.subscription_id, product_id)
    return web.json_response(
        subscription.model_dump(
            mode="json", exclude={"schema_version", "active", "reference_price"}
        ),
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
