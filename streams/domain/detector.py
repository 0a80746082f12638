"""The price detector: ``detect(state, observation) -> (new_state, events)``.

Pure and deterministic. The state deliberately holds no per-observation timestamp, so an
observation that changes nothing returns the *same* state object and the agent around it
pays no table (changelog) write for it; most observations change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from pricewatch.contract.records import (
    Availability,
    EventType,
    Outcome,
    PriceEvent,
    PriceObservation,
)
from pricewatch.ids import event_id_for

PURCHASABLE = frozenset({Availability.IN_STOCK, Availability.PREORDER, Availability.BACKORDER})
NOT_PURCHASABLE = frozenset({Availability.OUT_OF_STOCK, Availability.DISCONTINUED})


@dataclass(frozen=True, slots=True)
class ProductState:
    url: str
    title: str | None
    price: Decimal | None
    currency: str | None
    availability: Availability | None
    lowest_price: Decimal | None
    removed: bool
    gone_count: int
    error_count: int
    # observed_at of the newest observation that changed this state. Older observations
    # (replays, out-of-order delivery) are ignored; see module docstring.
    applied_at: datetime


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    removed_confirmations: int = 2


def _event(
    kind: EventType,
    obs: PriceObservation,
    detected_at: datetime,
    old: ProductState,
    new: ProductState,
) -> PriceEvent:
    return PriceEvent(
        event_id=event_id_for(obs.product_id, kind.value, obs.observation_id),
        event_type=kind,
        product_id=obs.product_id,
        url=obs.url,
        title=new.title or old.title,
        observation_id=obs.observation_id,
        observed_at=obs.observed_at,
        detected_at=detected_at,
        old_price=old.price,
        new_price=new.price,
        old_currency=old.currency,
        new_currency=new.currency,
        old_availability=old.availability,
        new_availability=new.availability,
    )


def detect(
    state: ProductState | None,
    obs: PriceObservation,
    config: DetectorConfig,
    detected_at: datetime,
) -> tuple[ProductState | None, list[PriceEvent]]:
    """Apply one observation. Returns the new state (``is state`` when nothing changed)."""
    if state is not None and obs.observed_at <= state.applied_at:
        return state, []  # duplicate or out of order: harmless by construction

    if obs.outcome is Outcome.ERROR:
        # A failed fetch says nothing about the product: never a price, stock or removal.
        if state is None:
            return None, []
        return replace(state, error_count=state.error_count + 1, applied_at=obs.observed_at), []

    if obs.outcome is Outcome.GONE:
        return _gone(state, obs, config, detected_at)

    return _ok(state, obs, detected_at)


def _gone(
    state: ProductState | None,
    obs: PriceObservation,
    config: DetectorConfig,
    detected_at: datetime,
) -> tuple[ProductState | None, list[PriceEvent]]:
    if state is None:
        return None, []  # never seen alive: nothing to remove, nothing to alert
    if state.removed:
        return state, []
    gone_count = state.gone_count + 1
    confirmed = gone_count >= config.removed_confirmations or obs.http_status == 410
    new = replace(state, gone_count=gone_count, removed=confirmed, applied_at=obs.observed_at)
    if not confirmed:
        return new, []
    return new, [_event(EventType.REMOVED, obs, detected_at, state, new)]


def _ok(
    state: ProductState | None,
    obs: PriceObservation,
    detected_at: datetime,
) -> tuple[ProductState | None, list[PriceEvent]]:
    availability = obs.availability if obs.availability is not Availability.UNKNOWN else None
    if state is None:
        # First sight of a product: learn it, never alert.
        return (
            ProductState(
                url=obs.url,
                title=obs.title,
                price=obs.price,
                currency=obs.currency,
                availability=availability,
                lowest_price=obs.price,
                removed=False,
                gone_count=0,
                error_count=0,
                applied_at=obs.observed_at,
            ),
            [],
        )

    price = obs.price if obs.price is not None else state.price
    currency = obs.currency or state.currency
    new_availability = availability if availability is not None else state.availability
    currency_changed = (
        state.currency is not None and currency is not None and currency != state.currency
    )
    lowest = state.lowest_price
    if price is not None and not currency_changed:
        lowest = price if lowest is None else min(lowest, price)
    elif currency_changed:
        lowest = price  # prices in another currency are not comparable

    new = ProductState(
        url=obs.url,
        title=obs.title or state.title,
        price=price,
        currency=currency,
        availability=new_availability,
        lowest_price=lowest,
        removed=False,
        gone_count=0,
        error_count=0,
        applied_at=obs.observed_at,
    )
    if _same(new, state):
        return state, []

    kinds: list[EventType] = []
    if state.removed:
        kinds.append(EventType.RESTORED)
    if currency_changed:
        kinds.append(EventType.CURRENCY_CHANGED)
    elif price is not None and state.price is not None and price != state.price:
        if price < state.price:
            kinds.append(EventType.PRICE_DROP)
            if state.lowest_price is None or price < state.lowest_price:
                kinds.append(EventType.NEW_LOWEST_PRICE)
        else:
            kinds.append(EventType.PRICE_INCREASE)
    if state.availability in PURCHASABLE and new_availability in NOT_PURCHASABLE:
        kinds.append(EventType.SOLD_OUT)
    elif state.availability in NOT_PURCHASABLE and new_availability in PURCHASABLE:
        kinds.append(EventType.BACK_IN_STOCK)
    return new, [_event(kind, obs, detected_at, state, new) for kind in kinds]


def _same(a: ProductState, b: ProductState) -> bool:
    """Equal in everything but applied_at: such an observation needs no state write."""
    return (
        a.url == b.url
        and a.title == b.title
        and a.price == b.price
        and a.currency == b.currency
        and a.availability == b.availability
        and a.lowest_price == b.lowest_price
        and a.removed == b.removed
        and a.gone_count == b.gone_count
        and a.error_count == b.error_count
    )
