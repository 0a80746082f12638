"""What the API does, shared by the JSON routes and the pages, split by concern:
``subscriptions`` (subscribe, confirm, edit, unsubscribe), ``accounts`` (verify an address,
its manage view, manage links), ``channels`` (an address's chat, push and webhook channels)
and ``admin``; ``base`` is what they all use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy
from aiokafka import AIOKafkaProducer

from api.services.accounts import Accounts
from api.services.admin import Admin
from api.services.base import Backend
from api.services.channels import Channels
from api.services.subscriptions import Subscriptions
from pricewatch.settings import Settings


@dataclass(frozen=True)
class Services:
    backend: Backend
    subscriptions: Subscriptions
    accounts: Accounts
    admin: Admin
    channels: Channels

    @classmethod
    def create(
        cls,
        settings: Settings,
        producer: AIOKafkaProducer,
        engine: sqlalchemy.Engine,
        clock: Callable[[], datetime] | None = None,
    ) -> Services:
        backend = Backend(settings, producer, engine, clock)
        channels = Channels(backend)
        return cls(
            backend, Subscriptions(backend, channels), Accounts(backend), Admin(backend), channels
        )
