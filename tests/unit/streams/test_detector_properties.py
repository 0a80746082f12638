"""Property-based checks of the detector and the alert rule over random observation streams."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from pricewatch.contract.records import (
    Availability,
    EventType,
    Outcome,
    PriceObservation,
)
from streams.domain.alerts import AlertState, evaluate
from streams.domain.detector import DetectorConfig, ProductState, detect
from tests.factories import at, error, gone, observation
from tests.unit.streams.test_alerts import RULES, entry

CONFIG = DetectorConfig(removed_confirmations=2)
TARGET = Decimal("50")

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


@given(steps)
@settings(max_examples=300)
def test_target_alerts_never_exceed_downward_crossings(raw: list[Step]) -> None:
    observations = build(raw)
    state: AlertState = entry(target=str(TARGET))
    product: ProductState | None = None
    alerts = 0
    crossings = 0
    last_price: Decimal | None = None
    for obs in observations:
        product, events = detect(product, obs, CONFIG, obs.observed_at)
        for event in events:
            state, notification = evaluate(state, event, RULES, at(0))
            alerts += notification is not None
        if obs.outcome is Outcome.OK and obs.price is not None:
            if last_price is not None and last_price > TARGET >= obs.price:
                crossings += 1
            last_price = obs.price
    assert alerts <= crossings
