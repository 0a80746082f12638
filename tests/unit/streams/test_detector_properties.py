"""Property-based checks of the detector over random observation streams (the alert rule's
are in test_alert_properties.py)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from pricewatch.contract.records import (
    Availability,
    EventType,
    Outcome,
    PriceObservation,
)
from streams.domain.detector import (
    NOT_PURCHASABLE,
    PURCHASABLE,
    DetectorConfig,
    ProductState,
    StreamPosition,
    detect,
)
from tests.factories import error, gone, observation

# One observation a second here: a flap window of 3 s lets streams flap and settle.
CONFIG = DetectorConfig(removed_confirmations=2, stock_flap_window=timedelta(seconds=3))
STOCK_CHANGES = (EventType.SOLD_OUT, EventType.BACK_IN_STOCK)

prices = st.integers(min_value=1, max_value=100).map(lambda n: str(Decimal(n)))
availabilities = st.sampled_from(
    [Availability.IN_STOCK, Availability.OUT_OF_STOCK, Availability.UNKNOWN, None]
)
ok_steps = st.tuples(st.just("ok"), prices, availabilities, st.sampled_from(["EUR", "EUR", "USD"]))
other_steps = st.tuples(
    st.sampled_from(["gone", "gone410", "error"]), st.just(""), st.none(), st.none()
)
steps = st.lists(st.one_of(ok_steps, ok_steps, other_steps), min_size=1, max_size=40)


Step = tuple[str, str, Availability | None, str | None]


def build(raw: list[Step]) -> list[PriceObservation]:
    out = []
    for i, (kind, price, availability, currency) in enumerate(raw):
        if kind == "ok":
            out.append(observation(i, price=price, availability=availability, currency=currency))
        elif kind == "error":
            out.append(error(i))
        else:
            out.append(gone(i, 410 if kind == "gone410" else 404))
    return out


def run(
    observations: list[PriceObservation], state: ProductState | None = None
) -> tuple[ProductState | None, list[tuple[PriceObservation, list[EventType]]]]:
    trace = []
    for obs in observations:
        state, events = detect(state, obs, CONFIG, obs.observed_at)
        trace.append((obs, [e.event_type for e in events]))
    return state, trace


@given(steps)
@settings(max_examples=300)
def test_first_observation_never_alerts(raw: list[Step]) -> None:
    _, trace = run(build(raw))
    assert trace[0][1] == []


@given(steps)
@settings(max_examples=300)
def test_errors_never_produce_events(raw: list[Step]) -> None:
    _, trace = run(build(raw))
    for obs, kinds in trace:
        if obs.outcome is Outcome.ERROR:
            assert kinds == []
        if obs.outcome is Outcome.GONE:
            assert set(kinds) <= {EventType.REMOVED}


@given(steps, st.data())
@settings(max_examples=300)
def test_replaying_any_prefix_adds_no_event(raw: list[Step], data: st.DataObject) -> None:
    observations = build(raw)
    state, _ = run(observations)
    cut = data.draw(st.integers(min_value=0, max_value=len(observations)))
    replayed_state, trace = run(observations[:cut], state)
    assert all(kinds == [] for _, kinds in trace)
    assert replayed_state == state


@given(steps, st.data())
@settings(max_examples=300)
def test_a_products_events_come_in_stream_position_order(
    raw: list[Step], data: st.DataObject
) -> None:
    # Delivered in any order, with redeliveries: every event comes after the one before
    # (the matcher recognises replays by it, streams/domain/alerts.py).
    observations = build(raw)
    delivered = data.draw(st.permutations(observations + observations[: len(observations) // 2]))
    state: ProductState | None = None
    positions: list[StreamPosition] = []
    for obs in delivered:
        state, events = detect(state, obs, CONFIG, obs.observed_at)
        positions.extend(StreamPosition.of(e.event_type, e.observed_at) for e in events)
    assert all(a < b for a, b in itertools.pairwise(positions))


@given(steps)
@settings(max_examples=300)
def test_stock_events_alternate_and_follow_what_the_pages_say(raw: list[Step]) -> None:
    # A person reading the pages sees it sell out, then come back, then sell out...
    _, trace = run(build(raw))
    stock = [k for _, kinds in trace for k in kinds if k in STOCK_CHANGES]
    assert all(a != b for a, b in itertools.pairwise(stock))
    said: Availability | None = None
    seen = False
    for obs, kinds in trace:
        before = said
        if obs.outcome is not Outcome.OK:
            continue
        if obs.availability not in (None, Availability.UNKNOWN):
            said = obs.availability
        if seen:  # (a first sight never alerts)
            sold_out = before not in NOT_PURCHASABLE and said in NOT_PURCHASABLE
            assert (EventType.SOLD_OUT in kinds) == sold_out
            back = before in NOT_PURCHASABLE and said in PURCHASABLE
            assert (EventType.BACK_IN_STOCK in kinds) == back
        seen = True


@given(steps)
@settings(max_examples=300)
def test_stock_settled_comes_once_after_flapping_when_the_stock_has_held(raw: list[Step]) -> None:
    _, trace = run(build(raw))
    changes: list[datetime] = []  # the first sight, then every stock change
    owed = False
    for obs, kinds in trace:
        if not changes:
            if obs.outcome is Outcome.OK:
                changes.append(obs.observed_at)
            continue
        if EventType.REMOVED in kinds:
            owed = False  # a removal is the news: nothing is owed after it
        if EventType.SOLD_OUT in kinds or EventType.BACK_IN_STOCK in kinds:
            assert EventType.STOCK_SETTLED not in kinds
            owed = obs.observed_at - changes[-1] < CONFIG.stock_flap_window
            changes.append(obs.observed_at)
            continue
        due = owed and obs.outcome is Outcome.OK
        due = due and obs.observed_at - changes[-1] >= CONFIG.stock_flap_window
        assert (EventType.STOCK_SETTLED in kinds) == due, (obs, kinds)
        if due:
            owed = False
