"""Replays after a crash, with hypothesis: the detector and the alert rules chained as the
worker runs them, killed at a random point and restarted, publish exactly what one
uninterrupted run publishes (README "Alerts you can trust": state survives restarts, and
one idempotency key always carries the same notification).

How a crash looks to the pure functions (``streams.batching``, ``streams.rocksdb_table_store``):
each agent publishes a batch's messages, waits for the broker, then writes its table, and
commits its input offset later still. After a SIGKILL it restarts from its last committed
offset with the table state of some later point (the local RocksDB store is ahead of the
committed offset; recovery keeps the newest value), so it re-reads messages its state
already includes. The detector may then publish again events the matcher has applied, and
the matcher re-reads events of its own past. Modelled per agent as indexes into its input:
``replay_from <= persisted <= crashed``: it processed and published everything up to
``crashed``, its table holds the state after ``persisted`` (stored and decoded, as the
tables keep it), and it restarts at ``replay_from``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from pricewatch.contract.records import (
    Availability,
    Notification,
    PriceEvent,
    PriceObservation,
    Subscription,
)
from pricewatch.ids import subscription_id_for
from streams.codec import (
    decode_alert_states,
    decode_product_state,
    encode_alert_states,
    encode_price_event,
    encode_product_state,
)
from streams.domain.alerts import (
    AlertRules,
    AlertState,
    evaluate,
    new_alert_state,
    newest_applied,
    with_subscription,
)
from streams.domain.detector import DetectorConfig, ProductState, detect
from tests.factories import PRODUCT_ID, URL, at, error, gone, observation

WINDOW = timedelta(hours=1)
RULES = AlertRules(cooldown=timedelta(hours=2), stock_flap_window=WINDOW)
CONFIG = DetectorConfig(removed_confirmations=2, stock_flap_window=WINDOW)
NOW = datetime(2030, 1, 1, tzinfo=UTC)  # created_at only: not compared

# --- Streams: pages, fetch errors, removals, and scrapers' own duplicates ---------------

gaps = st.sampled_from([60, 600, 1800, 3000, 3600, 4200, 7200])
ok_pages = st.tuples(
    st.just("ok"),
    st.sampled_from(["70.00", "79.99", "80.00", "85.00", "90.00", "100.00"]),
    st.sampled_from(
        [
            Availability.IN_STOCK,
            Availability.IN_STOCK,
            Availability.OUT_OF_STOCK,
            Availability.OUT_OF_STOCK,
            Availability.DISCONTINUED,
            None,
        ]
    ),
    st.sampled_from(["EUR"] * 8 + ["USD"]),
    gaps,
)
other_pages = st.tuples(
    st.sampled_from(["error", "gone", "gone410", "again"]), st.just(""), st.none(), st.none(), gaps
)
streams = st.lists(st.one_of(ok_pages, ok_pages, ok_pages, other_pages), min_size=1, max_size=30)


def build(raw: list[tuple[Any, ...]]) -> list[PriceObservation]:
    out: list[PriceObservation] = []
    t = 0
    for kind, price, availability, currency, gap in raw:
        if kind == "ok":
            out.append(observation(t, price=price, availability=availability, currency=currency))
        elif kind == "error":
            out.append(error(t))
        elif kind in ("gone", "gone410"):
            out.append(gone(t, 410 if kind == "gone410" else 404))
        elif out:
            out.append(out[-min(len(out), 3)])  # a scraper's redelivery, maybe out of order
        t += gap
    return out


@st.composite
def subscriptions(draw: st.DrawFn, n: int) -> Subscription:
    options: dict[str, Any] = {
        "target_price": draw(st.sampled_from([None, Decimal("80.00"), Decimal("85.00")])),
        "currency": draw(st.sampled_from([None, None, "EUR", "USD"])),
        "drop_percent": draw(st.sampled_from([None, Decimal("10")])),
        "notify_any_drop": draw(st.booleans()),
        "notify_price_increase": draw(st.booleans()),
        "notify_back_in_stock": draw(st.booleans()),
        "notify_sold_out": draw(st.booleans()),
        "notify_removed": draw(st.booleans()),
    }
    if (
        options["target_price"]
        or options["drop_percent"]
        or options["notify_any_drop"]
        or (options["notify_price_increase"])
    ):
        options["min_change_amount"] = draw(st.sampled_from([None, None, Decimal("5.00")]))
        options["min_change_percent"] = draw(st.sampled_from([None, None, Decimal("10")]))
    email = f"s{n}@example.com"
    return Subscription(
        subscription_id=subscription_id_for(email, PRODUCT_ID),
        email=email,
        product_id=PRODUCT_ID,
        url=URL,
        verified=True,
        created_at=at(-1),
        **options,
    )


@dataclass(frozen=True)
class Crash:
    """Indexes into an agent's input, ``replay_from <= persisted <= crashed``."""

    replay_from: int
    persisted: int
    crashed: int


@st.composite
def crashes(draw: st.DrawFn, length: int) -> Crash:
    points = sorted(draw(st.integers(0, length)) for _ in range(3))
    return Crash(*points)


# --- The two agents, as pure folds over their input, crashed or not ---------------------

State = TypeVar("State")
Item = TypeVar("Item")
Out = TypeVar("Out")


def run_agent(
    inputs: list[Item],
    crash: Crash | None,
    start: State,
    step: Callable[[State, Item, list[Out]], State],
    stored: Callable[[State], State],
) -> list[Out]:
    """Everything an agent publishes for ``inputs``: ``step`` applies one input to the
    state (returning a new one) and appends what it publishes; ``stored`` is a state as
    its table gives it back."""
    published: list[Out] = []
    state = kept = start
    end = len(inputs) if crash is None else crash.crashed
    for index, item in enumerate(inputs[:end]):
        if crash is not None and index == crash.persisted:
            kept = state
        state = step(state, item, published)
    if crash is None:
        return published
    if crash.persisted == end:
        kept = state
    state = stored(kept)
    for item in inputs[crash.replay_from :]:
        state = step(state, item, published)
    return published


def detector_step(
    state: ProductState | None, obs: PriceObservation, published: list[PriceEvent]
) -> ProductState | None:
    state, events = detect(state, obs, CONFIG, NOW)
    # As the matcher reads them back from the topic.
    published.extend(PriceEvent.model_validate_json(encode_price_event(e)) for e in events)
    return state


def detector_publishes(
    observations: list[PriceObservation], crash: Crash | None
) -> list[PriceEvent]:
    """The price-events topic the detector writes."""
    return run_agent(
        observations,
        crash,
        None,
        detector_step,
        lambda s: None if s is None else decode_product_state(encode_product_state(s)),
    )


MatcherInput = PriceEvent | Subscription
States = dict[str, AlertState]


def matcher_step(states: States, item: MatcherInput, published: list[Notification]) -> States:
    """As ``streams.agents.matcher`` applies a record: the product's table value holds all
    its subscriptions' states. (A new subscription starts from no known price here: what
    the detector knows when it arrives depends on timing, not on replays.)"""
    states = dict(states)
    if isinstance(item, Subscription):
        old = states.get(item.subscription_id)
        if old is None:
            states[item.subscription_id] = new_alert_state(
                item, None, newest_applied(states.values())
            )
        elif old.subscription != item:
            states[item.subscription_id] = with_subscription(old, item)
        return states
    for sub_id, state in states.items():
        states[sub_id], note = evaluate(state, item, RULES, NOW)
        if note is not None:
            published.append(note)
    return states


def matcher_publishes(inputs: list[MatcherInput], crash: Crash | None) -> list[Notification]:
    """The notifications topic the matcher writes."""
    return run_agent(
        inputs,
        crash,
        {},
        matcher_step,
        lambda states: decode_alert_states(encode_alert_states(states, rev=1)),
    )


def matcher_input(
    events: list[PriceEvent], records: list[tuple[int, Subscription]]
) -> list[MatcherInput]:
    """The events, each subscription record before the first copy of the k-th distinct
    event (``(k, record)``; k past the end: last): the same place in the stream whether
    or not the detector published some events twice."""
    out: list[MatcherInput] = []
    seen: set[str] = set()
    for event in events:
        if event.event_id not in seen:
            out.extend(record for k, record in records if k == len(seen))
            seen.add(event.event_id)
        out.append(event)
    out.extend(record for k, record in records if k >= len(seen))
    return out


def by_key(notes: list[Notification]) -> dict[str, set[str]]:
    """Each idempotency key and the distinct records published under it (but created_at)."""
    found: dict[str, set[str]] = defaultdict(set)
    for note in notes:
        found[note.idempotency_key].add(note.model_dump_json(exclude={"created_at"}))
    return dict(found)


def assert_same_as_uninterrupted(got: list[Notification], want: list[Notification]) -> None:
    expected = by_key(want)
    assert all(len(records) == 1 for records in expected.values())
    published = by_key(got)
    changed = {k: v for k, v in published.items() if len(v) > 1}
    assert not changed, f"one key, several records: {changed}"
    extra = published.keys() - expected.keys()
    assert not extra, f"notifications an uninterrupted run never sends: {extra}"
    assert published == expected


@st.composite
def subscription_records(draw: st.DrawFn, events: int) -> list[tuple[int, Subscription]]:
    """One or two subscriptions from the start; maybe a newer version of the first one
    and another subscriber, each arriving somewhere in the stream."""
    first = [draw(subscriptions(n)) for n in range(draw(st.integers(1, 2)))]
    records = [(0, s) for s in first]
    if draw(st.booleans()):
        newer = draw(subscriptions(0)).model_copy(
            update={"created_at": first[0].created_at + timedelta(seconds=1)}
        )
        records.append((draw(st.integers(0, events)), newer))
    if draw(st.booleans()):
        records.append((draw(st.integers(0, events)), draw(subscriptions(7))))
    return sorted(records, key=lambda r: r[0])


# --- The promises -----------------------------------------------------------------------


@given(st.data(), streams)
@settings(max_examples=600, deadline=None)
def test_a_matcher_crash_replays_into_exactly_the_uninterrupted_notifications(
    data: st.DataObject, raw: list[tuple[Any, ...]]
) -> None:
    events = detector_publishes(build(raw), None)
    inputs = matcher_input(events, data.draw(subscription_records(len(events))))
    want = matcher_publishes(inputs, None)
    crash = data.draw(crashes(len(inputs)))
    assert_same_as_uninterrupted(matcher_publishes(inputs, crash), want)


@given(st.data(), streams)
@settings(max_examples=600, deadline=None)
def test_a_worker_crash_replays_into_exactly_the_uninterrupted_notifications(
    data: st.DataObject, raw: list[tuple[Any, ...]]
) -> None:
    """Both agents crash: the detector publishes again events the matcher has applied
    (stock_settled among them), and the matcher re-reads its own past too."""
    observations = build(raw)
    events = detector_publishes(observations, None)
    records = data.draw(subscription_records(len(events)))
    want = matcher_publishes(matcher_input(events, records), None)

    topic = detector_publishes(observations, data.draw(crashes(len(observations))))
    # The detector's replay publishes the same events again, never others.
    assert {e.event_id: e for e in topic} == {e.event_id: e for e in events}
    assert len({e.event_id for e in events}) == len(events)
    inputs = matcher_input(topic, records)
    crash = data.draw(crashes(len(inputs)))
    assert_same_as_uninterrupted(matcher_publishes(inputs, crash), want)
