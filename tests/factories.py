"""Builders for wire records in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pricewatch.contract.records import Availability, Outcome, PriceObservation
from pricewatch.ids import observation_id_for, product_id_for

URL = "https://shop.example/products/kettle"
PRODUCT_ID = product_id_for(URL)
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def observation(
    t: float,
    *,
    outcome: Outcome = Outcome.OK,
    price: str | None = "100.00",
    currency: str | None = "EUR",
    availability: Availability | None = Availability.IN_STOCK,
    http_status: int | None = 200,
    error: str | None = None,
    url: str = URL,
) -> PriceObservation:
    observed_at = at(t)
    product_id = product_id_for(url)
    ok = outcome is Outcome.OK
    return PriceObservation(
        observation_id=observation_id_for(product_id, observed_at),
        product_id=product_id,
        url=url,
        observed_at=observed_at,
        outcome=outcome,
        price=Decimal(price) if ok and price is not None else None,
        currency=currency if ok else None,
        availability=availability if ok else None,
        title="Kettle",
        http_status=http_status,
        error=error,
    )


def gone(t: float, status: int = 404) -> PriceObservation:
    return observation(t, outcome=Outcome.GONE, http_status=status, error=f"http_{status}")


def error(t: float, reason: str = "timeout") -> PriceObservation:
    return observation(t, outcome=Outcome.ERROR, http_status=None, error=reason)
