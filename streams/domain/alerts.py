"""Matching price events to subscriptions: ``evaluate(state, event, rules) -> (state, note)``.

Pure and deterministic: times come from the event (when the page was observed), never
from a clock, so reprocessing an event gives the same answer and the same idempotency key.
The README section "Alerts you can trust" states these rules as promises; the property
tests in ``tests/unit/test_alert_properties.py`` check each against a reference model.

Price rules read the *buyable price*: the price while the product can be bought (the page
does not say sold out or discontinued; one that says nothing counts as buyable), in the
subscription's currency (its ``currency``, else the page's when it started). A price
seen while nobody can buy is not news; coming back in stock at a new price is a change
of the buyable price, told by the restock event.

- Thresholds (a target price, or N % below the reference price) alert once per crossing:
  when the buyable price goes from above the threshold (or from none: subscribed while
  sold out) to at or below it. Further moves below stay quiet, unless ``cooldown`` has
  passed since the last threshold alert and the price is lower than it was then (by the
  minimum change, if one is set).
- ``notify_any_drop`` / ``notify_price_increase``: the buyable price moved down (up) from
  the highest (lowest) buyable price since the last such alert, by at least the minimum
  change (``min_change_amount`` and/or ``min_change_percent``; none: any move).
- Stock (``notify_sold_out``, ``notify_back_in_stock``): at most one alert of each kind per
  ``stock_flap_window``. A change within the window of the last alert of its kind is held
  back; when the window is over it is told by the next event of the product, if it still
  holds (a later stock change replaces it). The detector's ``stock_settled`` event comes
  at the first check after the stock has held for the window, so a held change that lasts
  is always told, at the latest then.
- ``notify_removed``: once when the detector confirms a removal.
- Nothing at all for a subscription that is inactive or not verified (prices are still
  learned, so verifying later measures from them).

At most one notification per (subscription, event); its key is derived from both, and it
lists every rule the event met (``kinds``), the main one first (``kind``).

Replays (at-least-once delivery). The rules read what the state remembers (the buyable
price, the highs and lows since the last alert, the stock alerts told), so an event applied
twice would be judged against a state that already includes it: a drop measured from a
later price, a stock change seen as "within the window" of its own alert. After a crash
the matcher re-reads events its stored state already includes (the local store is ahead
of its committed offset), and the detector may publish again events already applied. So
each subscription's state remembers the position of the newest event it applied
(``applied``, a ``StreamPosition``), and ``evaluate`` ignores an event not after it. The
invariant: for any events e1..en of a product, in order, applying e1..ek, then ej..en for
any j <= k, gives the state and the notifications of applying e1..en once. It is enough
because the matcher writes a state only after the broker has every notification of the
events in it (``streams.batching``): an event the stored state includes has been told, and
one it does not include is judged against the very state it was judged against before, so
it gives the same notification (same key, same kinds).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Protocol

from pricewatch.contract.records import (
    Availability,
    EventType,
    Notification,
    NotificationKind,
    Subscription,
)
from pricewatch.ids import notification_key_for
from streams.domain.detector import NOT_PURCHASABLE, PURCHASABLE, ProductState, StreamPosition

HUNDRED = Decimal(100)
# Prices have at most 6 decimal places (the wire's Money), so a threshold floored to 6
# places lets exactly the same prices through, and fits the notification record.
MICRO = Decimal("0.000001")
Kind = NotificationKind

# The main kind of a notification is the first of its kinds in this order: what the
# subscriber asked for most specifically, then what they can act on.
PRIORITY: tuple[Kind, ...] = (
    Kind.TARGET_PRICE_REACHED,
    Kind.DROP_PERCENT_REACHED,
    Kind.BACK_IN_STOCK,
    Kind.PRICE_DROPPED,
    Kind.PRICE_INCREASED,
    Kind.SOLD_OUT,
    Kind.REMOVED,
)
THRESHOLD_KINDS = frozenset({Kind.TARGET_PRICE_REACHED, Kind.DROP_PERCENT_REACHED})
DOWN_KINDS = THRESHOLD_KINDS | {Kind.PRICE_DROPPED}


class PriceChange(Protocol):
    """What the rule reads of an event: a wire ``PriceEvent`` or a ``DetectedEvent``."""

    @property
    def event_id(self) -> str: ...
    @property
    def event_type(self) -> EventType: ...
    @property
    def product_id(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def title(self) -> str | None: ...
    @property
    def observed_at(self) -> datetime: ...
    @property
    def old_price(self) -> Decimal | None: ...
    @property
    def new_price(self) -> Decimal | None: ...
    @property
    def old_currency(self) -> str | None: ...
    @property
    def new_currency(self) -> str | None: ...
    @property
    def old_availability(self) -> Availability | None: ...
    @property
    def new_availability(self) -> Availability | None: ...


@dataclass(frozen=True, slots=True)
class AlertRules:
    cooldown: timedelta = timedelta(days=1)
    stock_flap_window: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class HeldStockChange:
    """A stock change not told yet because its kind was told within the flap window."""

    kind: NotificationKind  # SOLD_OUT or BACK_IN_STOCK
    observed_at: datetime  # when the page changed


@dataclass(frozen=True, slots=True)
class AlertState:
    """One subscription and what it has been told (kept by the matcher, per product)."""

    subscription: Subscription
    reference_price: Decimal | None = None
    price_alert_at: datetime | None = None  # the last threshold alert
    price_alert_price: Decimal | None = None
    # The currency the prices below are in: the subscription's, else the page's when the
    # subscription started. Prices in another currency are not compared with them.
    currency: str | None = None
    buyable_price: Decimal | None = None  # the last price one could buy at
    drop_from: Decimal | None = None  # highest buyable price since the last drop told
    rise_from: Decimal | None = None  # lowest buyable price since the last rise told
    sold_out_told_at: datetime | None = None
    back_in_stock_told_at: datetime | None = None
    held: HeldStockChange | None = None
    # The newest event applied: events not after it are replays (see the module docstring).
    # None: none yet, or a state stored before this was kept.
    applied: StreamPosition | None = None


def can_buy(availability: Availability | None) -> bool:
    """Pages that do not say (None) count as buyable: most product pages never say."""
    return availability not in NOT_PURCHASABLE


def new_alert_state(
    subscription: Subscription,
    known: ProductState | None,
    applied: StreamPosition | None = None,
) -> AlertState:
    """A new subscription's state, from what the detector knows of the product (if any).

    ``applied``: the newest event the matcher applied to the product's other subscriptions
    (``newest_applied``). The new one starts after it, so that those events, re-read after
    a crash, are not news to it either.
    """
    if known is None:
        return AlertState(
            subscription, reference_price=subscription.reference_price, applied=applied
        )
    currency = subscription.currency or known.currency
    in_currency = known.currency is None or known.currency == currency
    price = known.price if in_currency else None
    buyable = None if known.removed or not can_buy(known.availability) else price
    return AlertState(
        subscription,
        reference_price=subscription.reference_price or price,
        currency=currency,
        buyable_price=buyable,
        drop_from=buyable,
        rise_from=buyable,
        applied=applied,
    )


def newest_applied(states: Iterable[AlertState]) -> StreamPosition | None:
    """The position of the newest event applied to any of ``states``."""
    return max((s.applied for s in states if s.applied is not None), default=None)


def with_subscription(state: AlertState, subscription: Subscription) -> AlertState:
    """A new version of the subscription keeps what it was told, unless its currency moved:
    prices remembered in the old one mean nothing in the new one. An older version than the
    one held (``created_at``: the newest wins) is a replay and changes nothing."""
    old = state.subscription
    if subscription.created_at < old.created_at:
        return state
    state = replace(state, subscription=subscription)
    if subscription.currency is None or subscription.currency == (old.currency or state.currency):
        return state
    return replace(
        state,
        reference_price=subscription.reference_price,
        price_alert_at=None,
        price_alert_price=None,
        currency=subscription.currency,
        buyable_price=None,
        drop_from=None,
        rise_from=None,
    )


def thresholds(state: AlertState) -> list[tuple[NotificationKind, Decimal]]:
    """The subscription's price thresholds, most specific first."""
    sub = state.subscription
    found: list[tuple[NotificationKind, Decimal]] = []
    if sub.target_price is not None:
        found.append((Kind.TARGET_PRICE_REACHED, sub.target_price))
    if sub.drop_percent is not None and state.reference_price is not None:
        threshold = state.reference_price * (HUNDRED - sub.drop_percent) / HUNDRED
        found.append((Kind.DROP_PERCENT_REACHED, threshold.quantize(MICRO, ROUND_FLOOR)))
    return found


def moved_enough(start: Decimal, end: Decimal, sub: Subscription) -> bool:
    """``end`` differs from ``start`` by at least the subscription's minimum change."""
    move = abs(end - start)
    if move == 0:
        return False
    if sub.min_change_amount is not None and move < sub.min_change_amount:
        return False
    return sub.min_change_percent is None or move * HUNDRED >= sub.min_change_percent * start


def _learn(state: AlertState, event: PriceChange) -> AlertState:
    """What the state before the event says: the currency and the first prices."""
    if state.currency is None:
        currency = state.subscription.currency or event.old_currency or event.new_currency
        if currency is not None:
            state = replace(state, currency=currency)
    old = event.old_price
    if old is None or event.old_currency not in (None, state.currency):
        return state
    if state.reference_price is None:
        state = replace(state, reference_price=old)
    if state.buyable_price is None and can_buy(event.old_availability):
        state = replace(state, buyable_price=old, drop_from=old, rise_from=old)
    return state


def _buyable_now(state: AlertState, event: PriceChange) -> Decimal | None:
    """The price one can buy at after the event, in the state's currency; else None."""
    if event.event_type is EventType.REMOVED or not can_buy(event.new_availability):
        return None
    if event.new_currency not in (None, state.currency):
        return None
    return event.new_price


def _price_rules(
    state: AlertState, event: PriceChange, price: Decimal, rules: AlertRules
) -> tuple[AlertState, list[NotificationKind], Decimal | None]:
    """A new buyable price: the state that remembers it, the rules it meets and, for a
    drop or rise alert, the price the move is measured from."""
    sub = state.subscription
    before = state.buyable_price
    kinds: list[NotificationKind] = []
    for kind, threshold in thresholds(state):
        crossed = (before is None or before > threshold) and price <= threshold
        last_price, last_at = state.price_alert_price, state.price_alert_at
        again = (
            price <= threshold
            and before is not None
            and price < before  # a drop, never a rise, however low it still is
            and last_price is not None
            and last_at is not None
            and event.observed_at - last_at >= rules.cooldown
            and price < last_price
            and moved_enough(last_price, price, sub)
        )
        if crossed or again:
            kinds.append(kind)
    if kinds:
        state = replace(state, price_alert_at=event.observed_at, price_alert_price=price)
    drop_from = price if state.drop_from is None else max(state.drop_from, price)
    rise_from = price if state.rise_from is None else min(state.rise_from, price)
    baseline: Decimal | None = None
    if (
        sub.notify_any_drop
        and state.drop_from is not None
        and price < state.drop_from
        and moved_enough(state.drop_from, price, sub)
    ):
        kinds.append(Kind.PRICE_DROPPED)
        baseline = state.drop_from
    if (
        sub.notify_price_increase
        and state.rise_from is not None
        and price > state.rise_from
        and moved_enough(state.rise_from, price, sub)
    ):
        kinds.append(Kind.PRICE_INCREASED)
        baseline = state.rise_from
    if any(kind in DOWN_KINDS for kind in kinds):
        drop_from = price  # told: later drops are measured from here
    if Kind.PRICE_INCREASED in kinds:
        rise_from = price
    state = replace(state, buyable_price=price, drop_from=drop_from, rise_from=rise_from)
    return state, kinds, baseline


def _told_at(state: AlertState, kind: NotificationKind) -> datetime | None:
    return state.sold_out_told_at if kind is Kind.SOLD_OUT else state.back_in_stock_told_at


def _tell_stock(state: AlertState, kind: NotificationKind, at: datetime) -> AlertState:
    if kind is Kind.SOLD_OUT:
        return replace(state, sold_out_told_at=at, held=None)
    return replace(state, back_in_stock_told_at=at, held=None)


def _wants(sub: Subscription, kind: NotificationKind) -> bool:
    return sub.notify_sold_out if kind is Kind.SOLD_OUT else sub.notify_back_in_stock


def _stock_rules(
    state: AlertState, event: PriceChange, rules: AlertRules
) -> tuple[AlertState, NotificationKind | None, datetime | None]:
    """(state, stock kind to tell now, when that stock change was observed)."""
    at = event.observed_at
    window = rules.stock_flap_window
    if event.event_type in (EventType.SOLD_OUT, EventType.BACK_IN_STOCK):
        kind = Kind.SOLD_OUT if event.event_type is EventType.SOLD_OUT else Kind.BACK_IN_STOCK
        if not _wants(state.subscription, kind):
            return replace(state, held=None), None, None  # what was held no longer holds
        last = _told_at(state, kind)
        if last is not None and at != last and at - last < window:  # (at == last: a replay)
            return replace(state, held=HeldStockChange(kind, at)), None, None
        return _tell_stock(state, kind, at), kind, at
    if event.event_type is EventType.REMOVED:
        return replace(state, held=None), None, None  # the removal is the news now
    held = state.held
    if held is None:
        return state, None, None
    still = can_buy(event.new_availability) == (held.kind is Kind.BACK_IN_STOCK)
    if not (still and _wants(state.subscription, held.kind)):
        return replace(state, held=None), None, None
    last = _told_at(state, held.kind)
    if last is not None and at - last < window:
        return state, None, None  # its window is not over yet
    return _tell_stock(state, held.kind, at), held.kind, held.observed_at


def evaluate(
    state: AlertState, event: PriceChange, rules: AlertRules, now: datetime
) -> tuple[AlertState, Notification | None]:
    """Apply one price event to one subscription. ``now`` only stamps created_at.

    An event not after the newest one applied is a replay: it changes nothing and tells
    nothing (see the module docstring for why that is safe).
    """
    position = StreamPosition.of(event.event_type, event.observed_at)
    if state.applied is not None and position <= state.applied:
        return state, None
    state, notification = _evaluate(state, event, rules, now)
    return replace(state, applied=position), notification


def _evaluate(
    state: AlertState, event: PriceChange, rules: AlertRules, now: datetime
) -> tuple[AlertState, Notification | None]:
    sub = state.subscription
    state = _learn(state, event)
    if (
        event.event_type is not EventType.BACK_IN_STOCK
        and event.old_availability in NOT_PURCHASABLE
        and event.new_availability in PURCHASABLE
    ):
        # This observation is a restock: the detector emits its back_in_stock event after
        # this one, and that event tells the new price and the restock in one email.
        return state, None

    price = _buyable_now(state, event)
    if not (sub.active and sub.verified):
        # Unsubscribed or unverified: nothing but the verification email (sent by the API).
        # Prices are still learned, so that verifying later measures from the price then.
        if price is not None:
            state = replace(state, buyable_price=price, drop_from=price, rise_from=price)
        return replace(state, held=None), None

    kinds: list[NotificationKind] = []
    baseline: Decimal | None = None
    if price is not None and price != state.buyable_price:
        state, kinds, baseline = _price_rules(state, event, price, rules)

    stock_changed_at: datetime | None = None
    state, stock_kind, stock_changed_at = _stock_rules(state, event, rules)
    if stock_kind is not None:
        kinds.append(stock_kind)
    if event.event_type is EventType.REMOVED and sub.notify_removed:
        kinds.append(Kind.REMOVED)
    if not kinds:
        return state, None

    kinds.sort(key=PRIORITY.index)
    threshold = next((t for k, t in thresholds(state) if k in kinds), None)
    return state, Notification(
        idempotency_key=notification_key_for(sub.subscription_id, event.event_id),
        kind=kinds[0],
        kinds=kinds,
        subscription_id=sub.subscription_id,
        email=sub.email,
        product_id=event.product_id,
        url=event.url,
        title=event.title,
        event_id=event.event_id,
        event_type=event.event_type,
        observed_at=event.observed_at,
        # The price before, when it is in the same currency as the price now.
        old_price=event.old_price if event.old_currency == event.new_currency else None,
        new_price=event.new_price,
        currency=event.new_currency,
        target_price=sub.target_price,
        drop_percent=sub.drop_percent,
        reference_price=state.reference_price,
        threshold_price=threshold,
        baseline_price=baseline,
        availability=event.new_availability,
        stock_changed_at=stock_changed_at,
        created_at=now,
    )
