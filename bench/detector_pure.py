"""The pure detector on one core: ``detect`` over a realistic stream, state in a dict.

Candidate: what the agent's contract allows — the state object is kept as it is, and only
an observation that returns a new state object stores it.
Baseline: a naive table-backed implementation — every observation decodes the stored
state from JSON and encodes the new state back (``streams.codec``), changed or not.

Both run ``detect`` itself the same way on the same observations (already-parsed
``PriceObservation`` objects; wire decoding is priced separately in the cost model).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pricewatch.contract.records import PriceObservation
from streams import codec
from streams.codec import decode_product_state, encode_product_state
from streams.domain.detector import DetectorConfig, ProductState, detect

from . import workload
from .report import BenchResult, Figure, Row

NAME = "detector_pure"
AIM_OBS_PER_SECOND = 300_000.0
DETECTED_AT = datetime(2026, 11, 26, tzinfo=UTC)


def run_candidate(stream: list[PriceObservation], config: DetectorConfig) -> tuple[int, int]:
    """One pass with a fresh state; returns (state writes, events)."""
    states: dict[str, ProductState] = {}
    writes = 0
    events = 0
    for obs in stream:
        key = obs.product_id
        state = states.get(key)
        new_state, price_events = detect(state, obs, config, DETECTED_AT)
        if new_state is not state and new_state is not None:
            states[key] = new_state
            writes += 1
        events += len(price_events)
    return writes, events


def run_baseline(stream: list[PriceObservation], config: DetectorConfig) -> tuple[int, int]:
    """One pass the naive way: decode and re-encode the state on every observation."""
    table: dict[bytes, bytes] = {}
    writes = 0
    events = 0
    for obs in stream:
        key = obs.product_id.encode()
        raw = table.get(key)
        state = None if raw is None else decode_product_state(raw)
        new_state, price_events = detect(state, obs, config, DETECTED_AT)
        if new_state is not None:
            table[key] = encode_product_state(new_state)
            writes += 1
        events += len(price_events)
    return writes, events


def _rates(
    fn: Callable[[list[PriceObservation], DetectorConfig], tuple[int, int]],
    stream: list[PriceObservation],
    config: DetectorConfig,
    repeats: int,
) -> tuple[Figure, tuple[int, int]]:
    samples: list[float] = []
    counts = (0, 0)
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        counts = fn(stream, config)
        elapsed = time.perf_counter() - start
        samples.append(len(stream) / elapsed)
    return Figure(samples), counts


def _per_op_us(fn: Callable[[], object], count: int, repeats: int = 5) -> float:
    """Best microseconds per call of ``fn`` over ``count`` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            fn()
        best = min(best, (time.perf_counter() - start) / count)
    return best * 1e6


def cost_model(stream: list[PriceObservation], config: DetectorConfig) -> dict[str, float]:
    """Microseconds per call of what the agent does around ``detect`` (best of 5).

    At 25k observations/s a worker has 40 us per observation for everything.
    """
    obs = next(o for o in stream[len(stream) // 2 :] if o.price is not None)
    raw_obs = obs.model_dump_json().encode()
    state, _ = detect(None, obs, config, DETECTED_AT)
    assert state is not None
    raw_state = encode_product_state(state)
    # A minute later, same page: the common case, which must return the same state object.
    later = obs.model_copy(update={"observed_at": obs.observed_at + timedelta(minutes=1)})
    same_state = detect(state, later, config, DETECTED_AT)[0] is state
    cheaper = later.model_copy(update={"price": (obs.price or 0) / 2})
    _, events = detect(state, cheaper, config, DETECTED_AT)
    event = events[0]
    # What the agent sends: streams.codec.encode_price_event where it exists.
    encode_event: Callable[[Any], bytes] = getattr(
        codec, "encode_price_event", lambda e: e.model_dump_json().encode()
    )
    n = 20_000
    return {
        "observation_model_validate_json_us": _per_op_us(
            lambda: PriceObservation.model_validate_json(raw_obs), n
        ),
        "detect_unchanged_us": _per_op_us(lambda: detect(state, later, config, DETECTED_AT), n),
        "detect_price_drop_us": _per_op_us(lambda: detect(state, cheaper, config, DETECTED_AT), n),
        "decode_product_state_us": _per_op_us(lambda: decode_product_state(raw_state), n),
        "encode_product_state_us": _per_op_us(lambda: encode_product_state(state), n),
        "price_event_encode_us": _per_op_us(lambda: encode_event(event), n),
        "datetime_now_utc_us": _per_op_us(lambda: datetime.now(UTC), n),
        # 1.0 when an unchanged observation returns the same state object (no table write).
        "unchanged_returns_same_state": 1.0 if same_state else 0.0,
    }


def run(
    products: int = 10_000,
    observations: int = 500_000,
    repeats: int = 5,
    baseline_repeats: int = 3,
    seed: int = 1,
    log: Callable[[str], None] = print,
) -> BenchResult:
    started = time.perf_counter()
    log(f"[{NAME}] building a realistic stream: {products} products, {observations} obs")
    stream = workload.realistic(products, observations, seed)
    # The stream is input, not workload: keep the collector from rescanning it.
    gc.collect()
    gc.freeze()
    config = DetectorConfig()
    try:
        log(f"[{NAME}] candidate: {repeats} passes")
        candidate, (writes, events) = _rates(run_candidate, stream, config, repeats)
        log(f"[{NAME}] baseline: {baseline_repeats} passes")
        baseline, (base_writes, base_events) = _rates(
            run_baseline, stream, config, baseline_repeats
        )
        log(f"[{NAME}] cost model")
        costs = cost_model(stream, config)
    finally:
        gc.unfreeze()
    assert events == base_events, "candidate and baseline disagree on the events"
    outcomes: dict[str, int] = {}
    for obs in stream:
        outcomes[obs.outcome.value] = outcomes.get(obs.outcome.value, 0) + 1
    row = Row(
        case=f"realistic {products // 1000}k products",
        candidate=candidate,
        baseline=baseline,
        aim=AIM_OBS_PER_SECOND,
        notes="one core, detect() only, parsed observations",
        details={
            "state_writes": writes,
            "baseline_state_writes": base_writes,
            "events": events,
            "outcomes": outcomes,
            "candidate_us_per_obs_median": 1e6 / statistics.median(candidate.samples),
            "baseline_us_per_obs_median": 1e6 / statistics.median(baseline.samples),
        },
    )
    return BenchResult(
        name=NAME,
        description=__doc__ or "",
        candidate="detect() keeping state objects; store only new state objects",
        baseline="detect() with JSON decode + encode of the state on every observation",
        params={
            "products": products,
            "observations": observations,
            "repeats": repeats,
            "baseline_repeats": baseline_repeats,
            "seed": seed,
            "mix": workload.Mix().__dict__,
        },
        rows=[row],
        extra={"cost_model_us": costs},
        elapsed_seconds=time.perf_counter() - started,
    )
