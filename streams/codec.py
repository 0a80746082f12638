"""Table value encodings. Tables store bytes we control, so a Faust upgrade never changes them."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pricewatch.contract.records import Availability, EventType, NotificationKind, Subscription
from streams.domain.alerts import AlertState, HeldStockChange
from streams.domain.detector import DetectedEvent, ProductState, StreamPosition


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def encode_product_state(state: ProductState) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "url": state.url,
            "title": state.title,
            "price": _money(state.price),
            "currency": state.currency,
            "availability": None if state.availability is None else state.availability.value,
            "lowest_price": _money(state.lowest_price),
            "removed": state.removed,
            "gone_count": state.gone_count,
            "error_count": state.error_count,
            "applied_at": state.applied_at.isoformat(),
            "last_seen_at": _iso(state.last_seen_at),
            "last_ok_at": _iso(state.last_ok_at),
            "daily_lows": [[day, _money(low)] for day, low in state.daily_lows],
            "stock_changed_at": _iso(state.stock_changed_at),
            "stock_settle_due": _iso(state.stock_settle_due),
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
        last_seen_at=_time(d.get("last_seen_at")),
        last_ok_at=_time(d.get("last_ok_at")),
        daily_lows=tuple((day, Decimal(low)) for day, low in d.get("daily_lows", ())),
        # Absent from values stored before they were kept: None (see ProductState).
        stock_changed_at=_time(d.get("stock_changed_at")),
        stock_settle_due=_time(d.get("stock_settle_due")),
    )


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def product_state_version(raw: bytes) -> datetime:
    """Grows with every write of a product's state: the newest observation applied."""
    return datetime.fromisoformat(json.loads(raw)["applied_at"])


def encode_alert_states(states: dict[str, AlertState], rev: int) -> bytes:
    """``rev`` counts the writes of one product's alert states (see ``alert_states_version``).

    v2 adds fields to v1 and keeps v1's: a v1 reader (a worker rolled back) still decodes it.
    ``applied`` (the newest event applied, as [observed_at, event_type]) came later within
    v2: readers without it ignore it, and a value without it decodes to None.
    """
    return json.dumps(
        {
            "v": 2,
            "rev": rev,
            "subscriptions": {
                sub_id: _encode_alert_state(state) for sub_id, state in states.items()
            },
        },
        separators=(",", ":"),
    ).encode()


def _encode_alert_state(state: AlertState) -> dict[str, Any]:
    told = [t for t in (state.sold_out_told_at, state.back_in_stock_told_at) if t is not None]
    held = state.held
    return {
        "subscription": state.subscription.model_dump(mode="json"),
        "reference_price": _money(state.reference_price),
        "price_alert_at": _iso(state.price_alert_at),
        "price_alert_price": _money(state.price_alert_price),
        # v1's one stock time, for v1 readers only (v2 reads the two below).
        "stock_alert_at": _iso(max(told, default=None)),
        "currency": state.currency,
        "buyable_price": _money(state.buyable_price),
        "drop_from": _money(state.drop_from),
        "rise_from": _money(state.rise_from),
        "sold_out_told_at": _iso(state.sold_out_told_at),
        "back_in_stock_told_at": _iso(state.back_in_stock_told_at),
        "held": None if held is None else [held.kind.value, held.observed_at.isoformat()],
        "applied": _encode_position(state.applied),
    }


def _encode_position(position: StreamPosition | None) -> list[str] | None:
    if position is None:
        return None
    # The event type, not its rank: the value does not depend on the order's encoding.
    return [position.observed_at.isoformat(), position.event_type.value]


def _decode_position(value: list[str] | None) -> StreamPosition | None:
    if value is None:
        return None
    observed_at, event_type = value
    return StreamPosition.of(EventType(event_type), datetime.fromisoformat(observed_at))


def alert_states_version(raw: bytes | None) -> int:
    """The write counter of a product's alert states; 0 before the first write (and for
    values written before the counter existed)."""
    if not raw:
        return 0
    rev = json.loads(raw).get("rev", 0)
    return rev if isinstance(rev, int) else 0


def decode_alert_states(raw: bytes | None) -> dict[str, AlertState]:
    if not raw:
        return {}
    d: dict[str, Any] = json.loads(raw)
    return {sub_id: _decode_alert_state(item) for sub_id, item in d["subscriptions"].items()}


def _decode_alert_state(item: dict[str, Any]) -> AlertState:
    held = item.get("held")
    # A v1 value has none of the fields read with .get: the prices are learned again from
    # the next event, and its one stock_alert_at (which kind it was is unknown) is
    # dropped: holding back the wrong kind could keep a restock untold, while dropping it
    # at worst lets one more stock alert of a kind through in the window after an upgrade.
    return AlertState(
        subscription=Subscription.model_validate(item["subscription"]),
        reference_price=_dec(item["reference_price"]),
        price_alert_at=_time(item["price_alert_at"]),
        price_alert_price=_dec(item["price_alert_price"]),
        currency=item.get("currency"),
        buyable_price=_dec(item.get("buyable_price")),
        drop_from=_dec(item.get("drop_from")),
        rise_from=_dec(item.get("rise_from")),
        sold_out_told_at=_time(item.get("sold_out_told_at")),
        back_in_stock_told_at=_time(item.get("back_in_stock_told_at")),
        held=None
        if held is None
        else HeldStockChange(NotificationKind(held[0]), datetime.fromisoformat(held[1])),
        # Absent from values stored before it was kept: None, every next event is applied.
        applied=_decode_position(item.get("applied")),
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def encode_price_event(event: DetectedEvent) -> bytes:
    """The ``PriceEvent`` wire record (schema_version 1) of a detected event."""
    return json.dumps(
        {
            "schema_version": 1,
            "event_id": event.event_id,
            "event_type": event.event_type.value,
            "product_id": event.product_id,
            "url": event.url,
            "title": event.title,
            "observation_id": event.observation_id,
            "observed_at": event.observed_at.isoformat(),
            "detected_at": event.detected_at.isoformat(),
            "old_price": _money(event.old_price),
            "new_price": _money(event.new_price),
            "old_currency": event.old_currency,
            "new_currency": event.new_currency,
            "old_availability": _enum(event.old_availability),
            "new_availability": _enum(event.new_availability),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def _money(value: Decimal | None) -> str | None:
    # Fixed-point: never "1E+2", the same form the wire records use.
    return None if value is None else format(value, "f")


def _enum(value: Availability | None) -> str | None:
    return None if value is None else value.value


def last_price(raw_state: bytes | None) -> Decimal | None:
    """The price in a stored detector state, without decoding the rest of it."""
    if not raw_state:
        return None
    try:
        price = json.loads(raw_state).get("price")
        return None if price is None else Decimal(price)
    except (ValueError, TypeError, AttributeError, InvalidOperation):
        return None
