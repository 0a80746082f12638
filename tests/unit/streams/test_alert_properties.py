"""The promises of README "Alerts you can trust", checked with hypothesis over random
observation streams: each one as stated to a user, and the whole rule set against a
reference model written from that statement (observation by observation, no events).

The streams run through the real detector and the alert rule, as the worker chains them.
Times between checks vary from a minute to over an hour, so the flap window (1 h) and
the cooldown (2 h here) both come into play.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from pricewatch.contract.records import (
    Availability,
    Notification,
    NotificationKind,
    PriceObservation,
    Subscription,
)
from pricewatch.ids import subscription_id_for
from streams.domain.alerts import AlertRules, AlertState, evaluate, new_alert_state
from streams.domain.detector import DetectorConfig, ProductState, detect
from tests.factories import PRODUCT_ID, URL, at, error, observation

Kind = NotificationKind
WINDOW = timedelta(hours=1)
RULES = AlertRules(cooldown=timedelta(hours=2), stock_flap_window=WINDOW)
CONFIG = DetectorConfig(stock_flap_window=WINDOW)
UNBUYABLE = {Availability.OUT_OF_STOCK, Availability.DISCONTINUED}
BUYABLE = {Availability.IN_STOCK, Availability.PREORDER, Availability.BACKORDER}
STOCK = (Kind.SOLD_OUT, Kind.BACK_IN_STOCK, Kind.REMOVED)
PRICE_KINDS = {
    Kind.TARGET_PRICE_REACHED,
    Kind.DROP_PERCENT_REACHED,
    Kind.PRICE_DROPPED,
    Kind.PRICE_INCREASED,
}

# --- Streams and subscriptions --------------------------------------------------------

gaps = st.sampled_from([60, 300, 600, 1200, 1800, 3000, 3600, 4200, 7200])
pages = st.tuples(
    st.sampled_from(["ok"] * 9 + ["error"]),
    st.sampled_from(["70.00", "79.99", "80.00", "80.01", "85.00", "90.00", "100.00"]),
    st.sampled_from(
        [
            Availability.IN_STOCK,
            Availability.IN_STOCK,
            Availability.OUT_OF_STOCK,
            Availability.OUT_OF_STOCK,
            Availability.PREORDER,
            Availability.DISCONTINUED,
            Availability.UNKNOWN,
            None,
        ]
    ),
    st.sampled_from(["EUR"] * 6 + ["USD"]),
    gaps,
)
streams = st.lists(pages, min_size=1, max_size=40)
# A stock stream: in and out of stock, price fixed, to see flapping and its end.
stock_streams = st.lists(
    st.tuples(
        st.just("ok"),
        st.just("90.00"),
        st.sampled_from([Availability.IN_STOCK, Availability.OUT_OF_STOCK]),
        st.just("EUR"),
        gaps,
    ),
    min_size=1,
    max_size=40,
)


def build(raw: list[tuple[str, str, Availability | None, str, int]]) -> list[PriceObservation]:
    out: list[PriceObservation] = []
    t = 0
    for outcome, price, availability, currency, gap in raw:
        if outcome == "error":
            out.append(error(t))
        else:
            out.append(observation(t, price=price, availability=availability, currency=currency))
        t += gap
    return out


@st.composite
def subscriptions(draw: st.DrawFn) -> Subscription:
    minimum = draw(st.sampled_from([None, None, "0.01", "5.00", "10.00"]))
    percent = draw(st.sampled_from([None, None, "2", "10"]))
    options = {
        "target_price": draw(st.sampled_from([None, Decimal("80.00"), Decimal("85.00")])),
        "currency": draw(st.sampled_from([None, None, "EUR", "USD"])),
        "drop_percent": draw(st.sampled_from([None, Decimal("10"), Decimal("15")])),
        "notify_any_drop": draw(st.booleans()),
        "notify_price_increase": draw(st.booleans()),
        "notify_back_in_stock": draw(st.booleans()),
        "notify_sold_out": draw(st.booleans()),
    }
    wants_price = (
        options["target_price"] is not None
        or options["drop_percent"] is not None
        or options["notify_any_drop"]
        or options["notify_price_increase"]
    )
    if wants_price:
        options["min_change_amount"] = None if minimum is None else Decimal(minimum)
        options["min_change_percent"] = None if percent is None else Decimal(percent)
    return Subscription(
        subscription_id=subscription_id_for("p@example.com", PRODUCT_ID),
        email="p@example.com",
        product_id=PRODUCT_ID,
        url=URL,
        verified=True,
        created_at=at(-1),
        **options,  # type: ignore[arg-type]
    )


both_stock = Subscription(
    subscription_id=subscription_id_for("s@example.com", PRODUCT_ID),
    email="s@example.com",
    product_id=PRODUCT_ID,
    url=URL,
    notify_back_in_stock=True,
    notify_sold_out=True,
    verified=True,
    created_at=at(-1),
)


# --- The system under test: detector, then the rule, as the worker runs them ----------


@dataclass
class Told:
    seconds: float
    kinds: tuple[Kind, ...]
    notification: Notification


def run(
    observations: list[PriceObservation], subscription: Subscription, *, twice: bool = False
) -> list[Told]:
    """Observations through the detector; every event through the rule (each event twice
    with ``twice``: at-least-once delivery)."""
    product: ProductState | None = None
    state: AlertState = new_alert_state(subscription, None)
    told: list[Told] = []
    for obs in observations:
        product, events = detect(product, obs, CONFIG, obs.observed_at)
        for event in events:
            for _ in range(2 if twice else 1):
                state, note = evaluate(state, event, RULES, obs.observed_at)
                if note is not None:
                    seconds = (obs.observed_at - at(0)).total_seconds()
                    told.append(Told(seconds, tuple(note.kinds), note))
    return told


# --- The reference model: the README's rules, read observation by observation ----------


@dataclass
class Page:
    """What the pages said so far: the product as a person would see it."""

    price: Decimal | None = None
    currency: str | None = None
    availability: Availability | None = None  # the last one a page stated

    def buyable(self) -> bool:
        return self.availability not in UNBUYABLE


@dataclass
class Reference:
    sub: Subscription
    currency: str | None = None
    reference_price: Decimal | None = None
    buyable_history: list[Decimal] = field(default_factory=list)  # since the subscription
    since_drop: list[Decimal] = field(default_factory=list)  # buyable prices since a drop alert
    since_rise: list[Decimal] = field(default_factory=list)
    threshold_alert: tuple[datetime, Decimal] | None = None
    told_at: dict[Kind, datetime] = field(default_factory=dict)
    held: Kind | None = None
    stock_changes: list[datetime] = field(default_factory=list)
    settle_owed: bool = False

    def thresholds(self) -> Iterator[tuple[Kind, Decimal]]:
        if self.sub.target_price is not None:
            yield Kind.TARGET_PRICE_REACHED, self.sub.target_price
        if self.sub.drop_percent is not None and self.reference_price is not None:
            yield (
                Kind.DROP_PERCENT_REACHED,
                self.reference_price * (100 - self.sub.drop_percent) / 100,
            )

    def enough(self, start: Decimal, end: Decimal) -> bool:
        move = abs(end - start)
        amount, percent = self.sub.min_change_amount, self.sub.min_change_percent
        return (
            move > 0
            and (amount is None or move >= amount)
            and (percent is None or move * 100 >= percent * start)
        )

    def price_alerts(self, at_: datetime, price: Decimal) -> set[Kind]:
        kinds: set[Kind] = set()
        before = self.buyable_history[-1] if self.buyable_history else None
        for kind, threshold in self.thresholds():
            if (before is None or before > threshold) and price <= threshold:
                kinds.add(kind)  # a crossing (from no buyable price: subscribed while out)
            elif price <= threshold and before is not None and price < before:
                # A drop below it again: told if the cooldown is over since the last
                # threshold alert and it is lower than then, by the minimum change.
                last_at, last_price = self.threshold_alert or (at_, price)
                if (
                    at_ - last_at >= RULES.cooldown
                    and price < last_price
                    and self.enough(last_price, price)
                ):
                    kinds.add(kind)
        if kinds:
            self.threshold_alert = (at_, price)
        if self.sub.notify_any_drop and self.since_drop:
            high = max(self.since_drop)
            if price < high and self.enough(high, price):
                kinds.add(Kind.PRICE_DROPPED)
        if self.sub.notify_price_increase and self.since_rise:
            low = min(self.since_rise)
            if price > low and self.enough(low, price):
                kinds.add(Kind.PRICE_INCREASED)
        self.buyable_history.append(price)
        self.since_drop = [price] if kinds - {Kind.PRICE_INCREASED} else [*self.since_drop, price]
        self.since_rise = [price] if Kind.PRICE_INCREASED in kinds else [*self.since_rise, price]
        return kinds

    def wants(self, kind: Kind) -> bool:
        return self.sub.notify_sold_out if kind is Kind.SOLD_OUT else self.sub.notify_back_in_stock

    def window_over(self, kind: Kind, at_: datetime) -> bool:
        last = self.told_at.get(kind)
        return last is None or at_ - last >= WINDOW

    def stock_change(self, at_: datetime, kind: Kind) -> set[Kind]:
        self.held = None
        if not self.wants(kind):
            return set()
        if self.window_over(kind, at_):
            self.told_at[kind] = at_
            return {kind}
        self.held = kind
        return set()

    def held_alert(self, at_: datetime) -> set[Kind]:
        if self.held is None or not self.window_over(self.held, at_):
            return set()
        kind, self.held = self.held, None
        self.told_at[kind] = at_
        return {kind}


def reference(
    observations: list[PriceObservation], sub: Subscription
) -> list[tuple[float, set[Kind]]]:
    ref = Reference(sub, currency=sub.currency, reference_price=sub.reference_price)
    page: Page | None = None
    out: list[tuple[float, set[Kind]]] = []
    for obs in observations:
        if obs.price is None:  # an error: says nothing
            continue
        stated = None if obs.availability is Availability.UNKNOWN else obs.availability
        if page is None:  # first sight: learn, tell nothing
            page = Page(obs.price, obs.currency, stated)
            ref.currency = ref.currency or obs.currency
            if obs.currency == ref.currency:
                ref.reference_price = ref.reference_price or obs.price
                if page.buyable():
                    ref.buyable_history = [obs.price]
                    ref.since_drop, ref.since_rise = [obs.price], [obs.price]
            ref.stock_changes.append(obs.observed_at)
            continue
        before = Page(page.price, page.currency, page.availability)
        page = Page(obs.price, obs.currency, stated or before.availability)
        sold_out = before.buyable() and not page.buyable()
        back = before.availability in UNBUYABLE and page.availability in BUYABLE
        settles = False
        if sold_out or back:
            ref.settle_owed = obs.observed_at - ref.stock_changes[-1] < WINDOW
            ref.stock_changes.append(obs.observed_at)
        elif ref.settle_owed and obs.observed_at - ref.stock_changes[-1] >= WINDOW:
            ref.settle_owed, settles = False, True
        changed = (before.price, before.currency) != (page.price, page.currency)
        if obs.currency == ref.currency:  # drop_percent: from the first price in it
            ref.reference_price = ref.reference_price or obs.price
        if not (changed or sold_out or back or settles):
            continue  # the detector saw nothing to report: no event, nothing evaluated
        kinds: set[Kind] = set()
        buyable = page.price if page.buyable() and page.currency == ref.currency else None
        if buyable is not None and buyable != (ref.buyable_history or [None])[-1]:
            kinds |= ref.price_alerts(obs.observed_at, buyable)
        if sold_out:
            kinds |= ref.stock_change(obs.observed_at, Kind.SOLD_OUT)
        elif back:
            kinds |= ref.stock_change(obs.observed_at, Kind.BACK_IN_STOCK)
        else:
            kinds |= ref.held_alert(obs.observed_at)
        if kinds:
            out.append(((obs.observed_at - at(0)).total_seconds(), kinds))
    return out


# --- The whole rule set against the reference -----------------------------------------


@given(streams, subscriptions())
@settings(max_examples=400, deadline=None)
def test_alerts_are_what_the_stated_rules_say(raw: list, sub: Subscription) -> None:
    observations = build(raw)
    got = [(t.seconds, set(t.kinds)) for t in run(observations, sub)]
    assert got == reference(observations, sub)


@given(stock_streams)
@settings(max_examples=400, deadline=None)
def test_stock_alerts_are_what_the_stated_rules_say(raw: list) -> None:
    observations = build(raw)
    for sub in (
        both_stock,
        both_stock.model_copy(update={"notify_sold_out": False}),
        both_stock.model_copy(update={"notify_back_in_stock": False}),
    ):
        got = [(t.seconds, set(t.kinds)) for t in run(observations, sub)]
        assert got == reference(observations, sub)


# --- Each promise, as a user could check it -------------------------------------------


def _pages(observations: list[PriceObservation]) -> dict[float, Availability | None]:
    """The availability a person would see at each observation (the last one stated)."""
    seen: dict[float, Availability | None] = {}
    current: Availability | None = None
    for obs in observations:
        if obs.availability not in (None, Availability.UNKNOWN):
            current = obs.availability
        seen[(obs.observed_at - at(0)).total_seconds()] = current
    return seen


@given(streams, subscriptions())
@settings(max_examples=300, deadline=None)
def test_no_price_alert_for_something_nobody_can_buy(raw: list, sub: Subscription) -> None:
    observations = build(raw)
    availability = _pages(observations)
    for told in run(observations, sub):
        if PRICE_KINDS & set(told.kinds):
            assert availability[told.seconds] not in UNBUYABLE
            assert told.notification.availability not in UNBUYABLE


@given(stock_streams)
@settings(max_examples=300, deadline=None)
def test_flapping_never_sends_a_burst(raw: list) -> None:
    told = run(build(raw), both_stock)
    for kind in (Kind.SOLD_OUT, Kind.BACK_IN_STOCK):
        times = [t.seconds for t in told if kind in t.kinds]
        assert all(b - a >= WINDOW.total_seconds() for a, b in itertools.pairwise(times))


@given(stock_streams, st.sampled_from([0, 60, 600]))
@settings(max_examples=300, deadline=None)
def test_a_lasting_stock_state_is_always_told(raw: list, late: int) -> None:
    # Whatever the flapping before, a state that then lasts is told: at the latest at the
    # first check an hour (the window) after it began.
    observations = build(raw)
    last = observations[-1]
    observations.append(
        observation(
            (last.observed_at - at(0)).total_seconds() + WINDOW.total_seconds() + late,
            price="90.00",
            availability=last.availability,
        )
    )
    availability = _pages(observations)
    times = sorted(availability)
    changes = [
        t
        for before, t in itertools.pairwise(times)
        if (availability[before] in UNBUYABLE) != (availability[t] in UNBUYABLE)
    ]
    if not changes:
        return  # the stock never changed: nothing to tell
    final = Kind.SOLD_OUT if availability[times[-1]] in UNBUYABLE else Kind.BACK_IN_STOCK
    for sub in (both_stock, both_stock.model_copy(update={"notify_sold_out": False})):
        if not (sub.notify_sold_out or final is Kind.BACK_IN_STOCK):
            continue
        told = run(observations, sub)
        assert any(final in t.kinds and t.seconds >= changes[-1] for t in told), told
        stock_told = [t for t in told if set(t.kinds) & {Kind.SOLD_OUT, Kind.BACK_IN_STOCK}]
        if sub.notify_sold_out:
            assert final in stock_told[-1].kinds  # and it is the last word on the stock


@given(stock_streams)
@settings(max_examples=300, deadline=None)
def test_the_first_change_back_is_told_at_once(raw: list) -> None:
    # A restock is told when it happens unless a restock was told less than the window
    # before (a sell-out, likewise): a sold-out email never hides the change back.
    observations = build(raw)
    availability = _pages(observations)
    told = run(observations, both_stock)
    times = sorted(availability)
    for before, t in itertools.pairwise(times):
        was, now = availability[before] in UNBUYABLE, availability[t] in UNBUYABLE
        if was == now:
            continue
        kind = Kind.SOLD_OUT if now else Kind.BACK_IN_STOCK
        earlier = [x.seconds for x in told if kind in x.kinds and x.seconds < t]
        if not earlier or t - earlier[-1] >= WINDOW.total_seconds():
            assert any(x.seconds == t and kind in x.kinds for x in told)


def _buyable_prices(
    observations: list[PriceObservation], sub: Subscription
) -> list[tuple[float, Decimal | None]]:
    """(second, the price one could buy at then, in the subscription's currency, or None)."""
    out: list[tuple[float, Decimal | None]] = []
    availability = _pages(observations)
    currency = sub.currency
    for obs in observations:
        if obs.price is None:
            continue
        currency = currency or obs.currency
        seconds = (obs.observed_at - at(0)).total_seconds()
        buyable = availability[seconds] not in UNBUYABLE and obs.currency == currency
        out.append((seconds, obs.price if buyable else None))
    return out


@given(streams, subscriptions())
@settings(max_examples=300, deadline=None)
def test_small_moves_add_up_and_never_alert_alone(raw: list, sub: Subscription) -> None:
    observations = build(raw)
    told = run(observations, sub)
    for t in told:
        note = t.notification
        if {Kind.PRICE_DROPPED, Kind.PRICE_INCREASED} & set(t.kinds):
            assert note.baseline_price is not None and note.new_price is not None
            move = abs(note.new_price - note.baseline_price)
            assert move > 0
            assert sub.min_change_amount is None or move >= sub.min_change_amount
            if sub.min_change_percent is not None:
                assert move * 100 >= sub.min_change_percent * note.baseline_price
    if not sub.notify_any_drop:
        return
    # Whenever the price one can buy at is the minimum change below the highest since the
    # last drop alert, a drop alert has just been sent.
    down = {t.seconds for t in told if set(t.kinds) - {Kind.PRICE_INCREASED, *STOCK}}
    high: Decimal | None = None
    for seconds, price in _buyable_prices(observations, sub):
        if price is None:
            continue
        if high is not None and price < high:
            move = high - price
            enough = (sub.min_change_amount is None or move >= sub.min_change_amount) and (
                sub.min_change_percent is None or move * 100 >= sub.min_change_percent * high
            )
            assert not enough or seconds in down, (seconds, price, high)
        high = price if seconds in down or high is None else max(high, price)


@given(streams, subscriptions())
@settings(max_examples=300, deadline=None)
def test_a_target_alert_comes_once_per_crossing(raw: list, sub: Subscription) -> None:
    observations = build(raw)
    target = sub.target_price
    if target is None:
        return
    told = [t for t in run(observations, sub) if Kind.TARGET_PRICE_REACHED in t.kinds]
    prices = _buyable_prices(observations, sub)
    for t in told:
        assert t.notification.new_price is not None and t.notification.new_price <= target
        assert dict(prices)[t.seconds] == t.notification.new_price  # one could buy at it
    for first, then in itertools.pairwise(told):
        went_above = any(
            price is not None and price > target
            for seconds, price in prices
            if first.seconds < seconds < then.seconds
        )
        assert first.notification.new_price is not None
        assert then.notification.new_price is not None
        later_and_lower = (
            then.seconds - first.seconds >= RULES.cooldown.total_seconds()
            and then.notification.new_price < first.notification.new_price
        )
        assert went_above or later_and_lower


@given(streams, subscriptions())
@settings(max_examples=200, deadline=None)
def test_one_notification_per_event_and_replays_add_none(raw: list, sub: Subscription) -> None:
    observations = build(raw)
    once = run(observations, sub)
    keys = [t.notification.idempotency_key for t in once]
    assert len(keys) == len(set(keys))
    assert all(t.notification.kind is t.kinds[0] for t in once)
    twice = run(observations, sub, twice=True)
    assert {t.notification.idempotency_key for t in twice} == set(keys)


@given(streams, subscriptions(), st.sampled_from(["active", "verified"]))
@settings(max_examples=100, deadline=None)
def test_an_ended_or_unverified_subscription_is_told_nothing(
    raw: list, sub: Subscription, flag: str
) -> None:
    sub = sub.model_copy(update={flag: False, "notify_removed": True})
    assert run(build(raw), sub) == []
