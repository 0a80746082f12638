from __future__ import annotations

from decimal import Decimal

from pricewatch.contract.records import Availability, EventType, PriceObservation
from streams.domain.detector import DetectorConfig, ProductState, detect
from tests.factories import at, error, gone, observation

CONFIG = DetectorConfig(removed_confirmations=2)


def run(*observations: PriceObservation) -> tuple[ProductState | None, list[list[EventType]]]:
    state: ProductState | None = None
    kinds: list[list[EventType]] = []
    for obs in observations:
        state, events = detect(state, obs, CONFIG, detected_at=obs.observed_at)
        kinds.append([e.event_type for e in events])
    return state, kinds


def test_first_observation_learns_and_never_alerts() -> None:
    state, kinds = run(observation(0, availability=Availability.OUT_OF_STOCK))
    assert kinds == [[]]
    assert state is not None and state.price == Decimal("100.00")


def test_price_drop_to_new_lowest() -> None:
    state, kinds = run(observation(0), observation(10, price="80.00"))
    assert kinds[1] == [EventType.PRICE_DROP, EventType.NEW_LOWEST_PRICE]
    assert state is not None and state.lowest_price == Decimal("80.00")


def test_drop_that_is_not_a_new_low() -> None:
    _, kinds = run(
        observation(0),
        observation(1, price="70"),
        observation(2, price="90"),
        observation(3, price="80"),
    )
    assert kinds[1:] == [
        [EventType.PRICE_DROP, EventType.NEW_LOWEST_PRICE],
        [EventType.PRICE_INCREASE],
        [EventType.PRICE_DROP],
    ]


def test_drop_event_carries_old_and_new_values_and_a_deterministic_id() -> None:
    first = observation(0)
    second = observation(10, price="80.00")
    state, _ = detect(None, first, CONFIG, at(0))
    _, events = detect(state, second, CONFIG, at(11))
    _, again = detect(state, second, CONFIG, at(99))
    drop = events[0]
    assert (drop.old_price, drop.new_price) == (Decimal("100.00"), Decimal("80.00"))
    assert drop.observation_id == second.observation_id
    assert drop.event_id == again[0].event_id


def test_unchanged_observation_returns_the_same_state_object() -> None:
    state, _ = detect(None, observation(0), CONFIG, at(0))
    new_state, events = detect(state, observation(10), CONFIG, at(10))
    assert events == [] and new_state is state  # no table write needed


def test_duplicates_and_older_observations_change_nothing() -> None:
    state, _ = run(observation(0), observation(10, price="80"))
    assert state is not None
    for old in (observation(10, price="80"), observation(5, price="50"), observation(0)):
        new_state, events = detect(state, old, CONFIG, at(20))
        assert new_state is state and events == []


def test_sold_out_and_back_in_stock() -> None:
    _, kinds = run(
        observation(0),
        observation(1, availability=Availability.OUT_OF_STOCK),
        observation(2, availability=Availability.IN_STOCK),
    )
    assert kinds[1:] == [[EventType.SOLD_OUT], [EventType.BACK_IN_STOCK]]


def test_errors_never_mean_sold_out_removed_or_price_change() -> None:
    state, kinds = run(observation(0), error(1), error(2, "http_503"), error(3, "captcha"))
    assert kinds == [[], [], [], []]
    assert state is not None and state.price == Decimal("100.00") and not state.removed
    assert state.error_count == 3


def test_removed_needs_confirmation_and_410_is_final() -> None:
    _, kinds = run(observation(0), gone(1), gone(2), gone(3))
    assert kinds[1:] == [[], [EventType.REMOVED], []]
    _, kinds = run(observation(0), gone(1, status=410))
    assert kinds[1] == [EventType.REMOVED]


def test_a_single_gone_between_oks_is_forgotten() -> None:
    state, kinds = run(observation(0), gone(1), observation(2), gone(3))
    assert kinds == [[], [], [], []]
    assert state is not None and state.gone_count == 1


def test_removed_product_is_restored() -> None:
    _, kinds = run(observation(0), gone(1), gone(2), observation(3))
    assert kinds[3] == [EventType.RESTORED]


def test_currency_change_is_not_a_drop() -> None:
    state, kinds = run(observation(0), observation(1, price="90", currency="USD"))
    assert kinds[1] == [EventType.CURRENCY_CHANGED]
    assert state is not None and state.lowest_price == Decimal("90")


def test_first_observation_gone_or_error_creates_no_state() -> None:
    assert run(gone(0))[0] is None
    assert run(error(0))[0] is None


def test_seen_times_advance_at_their_resolution_only() -> None:
    hour = 3600
    state, _ = run(observation(0))
    assert state is not None and state.last_ok_at == at(0) == state.last_seen_at
    same, _ = detect(state, observation(hour - 1), CONFIG, at(hour))
    assert same is state  # unchanged page within the hour: no write
    later, _ = detect(state, observation(hour), CONFIG, at(hour))
    assert later is not None and later.last_ok_at == at(hour)
    errored, _ = detect(later, error(3 * hour), CONFIG, at(3 * hour))
    assert errored is not None
    assert errored.last_seen_at == at(3 * hour) and errored.last_ok_at == at(hour)


def test_recent_low_keeps_the_window_and_the_all_time_low() -> None:
    day = 86400
    config = DetectorConfig(recent_window_days=3)
    state = None
    for i, price in enumerate(["50", "90", "95", "97", "99"]):
        state, _ = detect(state, observation(i * day, price=price), config, at(i * day))
    assert state is not None
    assert state.lowest_price == Decimal("50")  # all time
    assert state.recent_lowest_price == Decimal("95")  # days 2..4


def test_a_lower_price_later_the_same_day_updates_that_days_low() -> None:
    state, _ = run(
        observation(0, price="90"), observation(60, price="80"), observation(120, price="85")
    )
    assert state is not None and [low for _, low in state.daily_lows] == [Decimal("80")]


def test_a_page_that_starts_saying_sold_out_is_a_sell_out() -> None:
    # Availability unknown (the page did not say) counts as buyable for the price alerts,
    # so a page that then says "sold out" has sold out.
    _, kinds = run(
        observation(0, availability=None),
        observation(1, availability=Availability.OUT_OF_STOCK),
        observation(2, availability=Availability.IN_STOCK),
    )
    assert kinds[1:] == [[EventType.SOLD_OUT], [EventType.BACK_IN_STOCK]]
