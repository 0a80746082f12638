"""The price detector: ``detect(state, observation, config, detected_at) -> (state, events)``.

Pure and deterministic. An observation that changes nothing returns the *same* state
object, so the agent around it pays no table (changelog) write for it; most observations
change nothing. To keep it so, the "seen" timestamps in the state (last observation, last
OK observation) advance only when they are ``config.seen_resolution`` old, and the recent
low is kept in per-day buckets: an unchanged page costs at most one write per resolution.

Stock: a page that says sold out (or discontinued) after saying it could be bought, or
after not saying, has sold out; one that says it can be bought after saying it could not
is back in stock. When availability changes within ``config.stock_flap_window`` of its
previous change (the page flaps), the detector owes a ``stock_settled`` event: it is
emitted with the first OK observation after availability has held for the window since
its last change. The alert rules hold back stock alerts while a page flaps, and that
event is what lets them tell the state it settled in although nothing changes any more.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from pricewatch.contract.records import (
    Availability,
    EventType,
    Outcome,
    PriceObservation,
)
from pricewatch.ids import event_id_for

PURCHASABLE = frozenset({Availability.IN_STOCK, Availability.PREORDER, Availability.BACKORDER})
NOT_PURCHASABLE = frozenset({Availability.OUT_OF_STOCK, Availability.DISCONTINUED})

# The order in which ``detect`` emits the events of one observation. A product's events
# come at strictly growing ``observed_at`` (only a newer observation changes the state), so
# (observed_at, place in this order) orders all of a product's events: see StreamPosition.
EVENT_ORDER: tuple[EventType, ...] = (
    EventType.REMOVED,
    EventType.RESTORED,
    EventType.CURRENCY_CHANGED,
    EventType.PRICE_DROP,
    EventType.NEW_LOWEST_PRICE,
    EventType.PRICE_INCREASE,
    EventType.SOLD_OUT,
    EventType.BACK_IN_STOCK,
    EventType.STOCK_SETTLED,
)
_RANK = {event_type: rank for rank, event_type in enumerate(EVENT_ORDER)}


@dataclass(frozen=True, slots=True, order=True)
class StreamPosition:
    """Where an event stands among its product's events: later events compare greater.

    The same for an event and its redeliveries (a detector replaying observations after a
    crash publishes the same events again), so a consumer that remembers the position of
    the newest event it applied recognises any event it has already applied.
    """

    observed_at: datetime
    rank: int  # the event type's place in EVENT_ORDER

    @classmethod
    def of(cls, event_type: EventType, observed_at: datetime) -> StreamPosition:
        return cls(observed_at, _RANK[event_type])

    @property
    def event_type(self) -> EventType:
        return EVENT_ORDER[self.rank]


@dataclass(frozen=True, slots=True)
class DetectedEvent:
    """A change the detector saw; the agent publishes it as a ``PriceEvent`` record.

    A plain slotted dataclass because building it is on the hot path (a pydantic record
    costs ~10x more); ``streams.codec.encode_price_event`` writes the wire form.
    """

    event_id: str
    event_type: EventType
    product_id: str
    url: str
    title: str | None
    observation_id: str
    observed_at: datetime
    detected_at: datetime
    old_price: Decimal | None
    new_price: Decimal | None
    old_currency: str | None
    new_currency: str | None
    old_availability: Availability | None
    new_availability: Availability | None


@dataclass(frozen=True, slots=True)
class ProductState:
    url: str
    title: str | None
    price: Decimal | None  # last good price
    currency: str | None
    availability: Availability | None
    lowest_price: Decimal | None  # all-time, in the current currency
    removed: bool
    gone_count: int  # consecutive
    error_count: int  # consecutive
    # observed_at of the newest observation that changed this state. Older observations
    # (replays, out-of-order delivery) are ignored.
    applied_at: datetime
    last_seen_at: datetime | None = None  # last observation, to seen_resolution
    last_ok_at: datetime | None = None  # last OK observation, to seen_resolution
    # (day ordinal, lowest price that day) for the recent window, oldest first.
    daily_lows: tuple[tuple[int, Decimal], ...] = ()
    # observed_at of the last availability change (sold out / back in stock), or of the
    # first sight. None (a state stored before this was kept): unknown, taken as recent.
    stock_changed_at: datetime | None = None
    # Set after a change within the flap window of the previous one: from then on, the
    # first OK observation emits STOCK_SETTLED (and clears it).
    stock_settle_due: datetime | None = None

    @property
    def recent_lowest_price(self) -> Decimal | None:
        return min((low for _, low in self.daily_lows), default=None)


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    removed_confirmations: int = 2
    recent_window_days: int = 30
    seen_resolution: timedelta = timedelta(hours=1)
    # The alert rules' stock flap window (PRICEWATCH_STOCK_FLAP_WINDOW_SECONDS).
    stock_flap_window: timedelta = timedelta(hours=1)


def _event(
    kind: EventType,
    obs: PriceObservation,
    detected_at: datetime,
    old: ProductState,
    new: ProductState,
) -> DetectedEvent:
    return DetectedEvent(
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


def _seen(previous: datetime | None, now: datetime, config: DetectorConfig) -> datetime | None:
    """Advance a "last seen" time only when it is a resolution old (see module docstring)."""
    if previous is None or now - previous >= config.seen_resolution:
        return now
    return previous


def _daily_lows(
    lows: tuple[tuple[int, Decimal], ...], price: Decimal, at: datetime, config: DetectorConfig
) -> tuple[tuple[int, Decimal], ...]:
    day = at.toordinal()
    kept = [(d, low) for d, low in lows if d > day - config.recent_window_days]
    if kept and kept[-1][0] == day:
        if price >= kept[-1][1]:
            return lows if len(kept) == len(lows) else tuple(kept)
        kept[-1] = (day, price)
    elif kept and kept[-1][0] > day:
        return lows  # an older day arriving late: the window has moved on
    else:
        kept.append((day, price))
    return tuple(kept)


def detect(
    state: ProductState | None,
    obs: PriceObservation,
    config: DetectorConfig,
    detected_at: datetime,
) -> tuple[ProductState | None, list[DetectedEvent]]:
    """Apply one observation. Returns the new state (``is state`` when nothing changed)."""
    if state is not None and obs.observed_at <= state.applied_at:
        return state, []  # duplicate or out of order: harmless by construction

    if obs.outcome is Outcome.ERROR:
        # A failed fetch says nothing about the product: never a price, stock or removal.
        if state is None:
            return None, []
        return replace(
            state,
            error_count=state.error_count + 1,
            applied_at=obs.observed_at,
            last_seen_at=_seen(state.last_seen_at, obs.observed_at, config),
        ), []

    if obs.outcome is Outcome.GONE:
        return _gone(state, obs, config, detected_at)

    return _ok(state, obs, config, detected_at)


def _gone(
    state: ProductState | None,
    obs: PriceObservation,
    config: DetectorConfig,
    detected_at: datetime,
) -> tuple[ProductState | None, list[DetectedEvent]]:
    if state is None:
        return None, []  # never seen alive: nothing to remove, nothing to alert
    last_seen_at = _seen(state.last_seen_at, obs.observed_at, config)
    if state.removed:
        if last_seen_at == state.last_seen_at:
            return state, []
        return replace(state, last_seen_at=last_seen_at, applied_at=obs.observed_at), []
    gone_count = state.gone_count + 1
    confirmed = gone_count >= config.removed_confirmations or obs.http_status == 410
    new = replace(
        state,
        gone_count=gone_count,
        removed=confirmed,
        applied_at=obs.observed_at,
        last_seen_at=last_seen_at,
        # A removal is the next thing subscribers hear: nothing is owed after it.
        stock_settle_due=None if confirmed else state.stock_settle_due,
    )
    if not confirmed:
        return new, []
    return new, [_event(EventType.REMOVED, obs, detected_at, state, new)]


def _ok(
    state: ProductState | None,
    obs: PriceObservation,
    config: DetectorConfig,
    detected_at: datetime,
) -> tuple[ProductState | None, list[DetectedEvent]]:
    availability = obs.availability if obs.availability is not Availability.UNKNOWN else None
    at = obs.observed_at
    if state is not None and _unchanged(state, obs, availability, config):
        return state, []
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
                applied_at=at,
                last_seen_at=at,
                last_ok_at=at,
                daily_lows=() if obs.price is None else ((at.toordinal(), obs.price),),
                stock_changed_at=at,
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
    daily_lows = state.daily_lows
    if currency_changed:
        # Prices in another currency are not comparable: start the lows again.
        lowest = price
        daily_lows = () if price is None else ((at.toordinal(), price),)
    elif price is not None:
        lowest = price if lowest is None else min(lowest, price)
        daily_lows = _daily_lows(state.daily_lows, price, at, config)

    stock_event: EventType | None = None
    if state.availability not in NOT_PURCHASABLE and new_availability in NOT_PURCHASABLE:
        stock_event = EventType.SOLD_OUT  # from buyable, or from not saying
    elif state.availability in NOT_PURCHASABLE and new_availability in PURCHASABLE:
        stock_event = EventType.BACK_IN_STOCK
    settled = False
    stock_changed_at, settle_due = state.stock_changed_at, state.stock_settle_due
    if stock_event is not None:
        flapping = stock_changed_at is None or at - stock_changed_at < config.stock_flap_window
        stock_changed_at, settle_due = at, (at + config.stock_flap_window if flapping else None)
    elif settle_due is not None and at >= settle_due:
        settled, settle_due = True, None

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
        applied_at=at,
        last_seen_at=_seen(state.last_seen_at, at, config),
        last_ok_at=_seen(state.last_ok_at, at, config),
        daily_lows=daily_lows,
        stock_changed_at=stock_changed_at,
        stock_settle_due=settle_due,
    )
    if _same(new, state):
        return state, []

    # In EVENT_ORDER (StreamPosition relies on it).
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
    if stock_event is not None:
        kinds.append(stock_event)
    if settled:
        kinds.append(EventType.STOCK_SETTLED)
    return new, [_event(kind, obs, detected_at, state, new) for kind in kinds]


def _unchanged(
    state: ProductState,
    obs: PriceObservation,
    availability: Availability | None,
    config: DetectorConfig,
) -> bool:
    """The common case, decided without building a new state: the page says what we knew."""
    at = obs.observed_at
    return (
        (obs.price is None or obs.price == state.price)
        and (availability is None or availability == state.availability)
        and (obs.currency is None or obs.currency == state.currency)
        and not state.removed
        and state.gone_count == 0
        and state.error_count == 0
        and (obs.title is None or obs.title == state.title)
        and obs.url == state.url
        and state.last_ok_at is not None
        and at - state.last_ok_at < config.seen_resolution
        and state.last_seen_at is not None
        and at - state.last_seen_at < config.seen_resolution
        and (state.stock_settle_due is None or at < state.stock_settle_due)
        and (
            obs.price is None
            or (
                bool(state.daily_lows)
                and state.daily_lows[-1][0] == at.toordinal()
                and obs.price >= state.daily_lows[-1][1]
                and state.daily_lows[0][0] > at.toordinal() - config.recent_window_days
            )
        )
    )


def _same(a: ProductState, b: ProductState) -> bool:
    """Equal in everything but applied_at: such an observation needs no state write."""
    return (
        a.price == b.price
        and a.availability == b.availability
        and a.currency == b.currency
        and a.title == b.title
        and a.url == b.url
        and a.lowest_price == b.lowest_price
        and a.removed == b.removed
        and a.gone_count == b.gone_count
        and a.error_count == b.error_count
        and a.last_seen_at == b.last_seen_at
        and a.last_ok_at == b.last_ok_at
        and a.daily_lows == b.daily_lows
        and a.stock_changed_at == b.stock_changed_at
        and a.stock_settle_due == b.stock_settle_due
    )
