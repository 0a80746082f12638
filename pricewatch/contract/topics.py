"""Every topic Pricewatch owns, declared once. Created up front with their final partition
counts (the embedded broker cannot add partitions later, and auto-creation is not relied on)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pricewatch.contract.records import (
    AccountEmail,
    ChannelConfirmation,
    DeadLetter,
    Notification,
    PriceEvent,
    PriceObservation,
    ScrapeRequest,
    Subscription,
    WireRecord,
)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    record: type[WireRecord]
    key: str
    configs: dict[str, str] = field(default_factory=dict)


SCRAPE_REQUESTS = TopicSpec("scrape-requests", ScrapeRequest, key="URL host")
PRICE_OBSERVATIONS = TopicSpec("price-observations", PriceObservation, key="product_id")
PRICE_EVENTS = TopicSpec("price-events", PriceEvent, key="product_id")
SUBSCRIPTIONS = TopicSpec(
    "subscriptions",
    Subscription,
    key="subscription_id (partitioned by product_id)",
    configs={"cleanup.policy": "compact"},
)
NOTIFICATIONS = TopicSpec("notifications", Notification, key="idempotency_key")
ACCOUNT_EMAILS = TopicSpec("account-emails", AccountEmail, key="email")
CHANNEL_CONFIRMATIONS = TopicSpec("channel-confirmations", ChannelConfirmation, key="channel_id")
DEAD_LETTERS = TopicSpec("dead-letters", DeadLetter, key="source topic")

ALL_TOPICS: tuple[TopicSpec, ...] = (
    SCRAPE_REQUESTS,
    PRICE_OBSERVATIONS,
    PRICE_EVENTS,
    SUBSCRIPTIONS,
    NOTIFICATIONS,
    ACCOUNT_EMAILS,
    CHANNEL_CONFIRMATIONS,
    DEAD_LETTERS,
)
