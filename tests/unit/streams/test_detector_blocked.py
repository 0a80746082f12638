"""A blocked fetch (bot check, captcha, consent wall) is an error to the detector: it never
makes a price change, a sold-out, a removal or a "restored", however long it lasts."""

from __future__ import annotations

from pricewatch.contract.records import Availability, EventType, Outcome, PriceObservation
from streams.domain.detector import DetectorConfig, ProductState, detect
from tests.factories import observation

CONFIG = DetectorConfig(removed_confirmations=2)


def blocked(t: float, by: str = "captcha", status: int | None = 200) -> PriceObservation:
    return observation(t, outcome=Outcome.ERROR, http_status=status, error="blocked").model_copy(
        update={"blocked_by": by}
    )


def run(*observations: PriceObservation) -> tuple[ProductState | None, list[list[EventType]]]:
    state: ProductState | None = None
    kinds: list[list[EventType]] = []
    for obs in observations:
        state, events = detect(state, obs, CONFIG, detected_at=obs.observed_at)
        kinds.append([e.event_type for e in events])
    return state, kinds


def test_blocked_fetches_change_nothing_about_a_product() -> None:
    walls = (
        observation(0, price="100.00"),
        blocked(10),
        blocked(20, "cloudflare", 403),
        blocked(30, "consent", 200),
        blocked(40, "bot_check", 404),  # a 404 with a challenge body: not a removal
    )
    state, kinds = run(*walls)
    assert kinds == [[], [], [], [], []]
    assert state is not None
    assert state.availability is Availability.IN_STOCK and state.price is not None
    assert not state.removed and state.gone_count == 0
    assert state.error_count == 4  # counted as failed fetches, nothing more
    _, kinds = run(*walls, observation(50, price="100.00"))
    assert kinds[-1] == []


def test_a_real_change_after_a_block_is_measured_against_the_last_reading() -> None:
    _, kinds = run(observation(0, price="100.00"), blocked(10), observation(20, price="80.00"))
    assert kinds[1] == []
    assert kinds[2] == [EventType.PRICE_DROP, EventType.NEW_LOWEST_PRICE]


def test_a_product_first_met_behind_a_wall_has_no_state_yet() -> None:
    state, kinds = run(blocked(0), blocked(10))
    assert state is None and kinds == [[], []]
