"""Table value encodings. Tables store bytes we control, so a Faust upgrade never changes them."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from pricewatch.contract.records import Availability, Subscription
from streams.domain.detector import ProductState


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def encode_product_state(state: ProductState) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "url": state.url,
            "title": state.title,
            "price": None if state.price is None else str(state.price),
            "currency": state.currency,
            "availability": None if state.availability is None else state.availability.value,
            "lowest_price": None if state.lowest_price is None else str(state.lowest_price),
            "removed": state.removed,
            "gone_count": state.gone_count,
            "error_count": state.error_count,
            "applied_at": state.applied_at.isoformat(),
        },
        separators=(",", ":"),
    ).encode()


def decode_product_state(raw: bytes) -> ProductState:
    d: dict[str, Any] = json.loads(raw)
    return ProductState(
        url=d["url"],
        title=d["title"],
        price=_dec(d["price"]),
        currency=d["currency"],
        availability=None if d["availability"] is None else Availability(d["availability"]),
        lowest_price=_dec(d["lowest_price"]),
        removed=d["removed"],
        gone_count=d["gone_count"],
        error_count=d["error_count"],
        applied_at=datetime.fromisoformat(d["applied_at"]),
    )


def encode_subscriptions(subscriptions: dict[str, Subscription]) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "subscriptions": {
                sub_id: subscription.model_dump(mode="json")
                for sub_id, subscription in subscriptions.items()
            },
        },
        separators=(",", ":"),
    ).encode()


def decode_subscriptions(raw: bytes | None) -> dict[str, Subscription]:
    if not raw:
        return {}
    d: dict[str, Any] = json.loads(raw)
    return {
        sub_id: Subscription.model_validate(item) for sub_id, item in d["subscriptions"].items()
    }
