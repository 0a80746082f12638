"""Deterministic observation streams for the benchmarks.

A stream visits its products in sweeps, as the scheduler does: every sweep observes each
product once, in a shuffled order, later than the sweep before, so each product's
observations are in time order (as they are on one Kafka partition).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pricewatch.contract.records import Availability, Outcome, PriceObservation
from pricewatch.ids import observation_id_for, product_id_for

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CENT = Decimal("0.01")
KINDS = ("realistic", "unchanged", "changed")


@dataclass(frozen=True)
class Mix:
    """What happens to a product between two sweeps; the rest is "unchanged"."""

    error: float = 0.015  # the fetch failed
    gone: float = 0.005  # 404
    drop: float = 0.03  # price -10 %
    increase: float = 0.03  # price +10 %
    stock: float = 0.02  # in stock <-> out of stock

    @property
    def unchanged(self) -> float:
        return 1.0 - (self.error + self.gone + self.drop + self.increase + self.stock)


@dataclass
class _Product:
    url: str
    product_id: str
    title: str
    price: Decimal
    availability: Availability


def _products(count: int, rng: random.Random) -> list[_Product]:
    products = []
    for n in range(count):
        url = f"https://shop{n % 50}.example/products/item-{n}"
        price = (Decimal(rng.randint(500, 50_000)) / 100).quantize(CENT)
        products.append(
            _Product(url, product_id_for(url), f"Item {n}", price, Availability.IN_STOCK)
        )
    return products


def _observation(
    product: _Product,
    observed_at: datetime,
    outcome: Outcome = Outcome.OK,
    http_status: int | None = 200,
    error: str | None = None,
) -> PriceObservation:
    ok = outcome is Outcome.OK
    return PriceObservation(
        observation_id=observation_id_for(product.product_id, observed_at),
        product_id=product.product_id,
        url=product.url,
        observed_at=observed_at,
        outcome=outcome,
        price=product.price if ok else None,
        currency="EUR" if ok else None,
        availability=product.availability if ok else None,
        title=product.title if ok else None,
        http_status=http_status,
        extractor="jsonld" if ok else None,
        error=error,
    )


def _sweeps(
    products: list[_Product], observations: int, rng: random.Random
) -> Iterator[tuple[int, _Product, datetime]]:
    interval = timedelta(seconds=max(300.0, len(products) * 0.02))
    order = list(range(len(products)))
    emitted = 0
    sweep = 0
    while True:
        rng.shuffle(order)
        start = T0 + sweep * interval
        for position, index in enumerate(order):
            if emitted >= observations:
                return
            yield sweep, products[index], start + timedelta(milliseconds=10 * position)
            emitted += 1
        sweep += 1


def realistic(
    products: int, observations: int, seed: int = 1, mix: Mix | None = None
) -> list[PriceObservation]:
    """Mostly unchanged prices, some drops, increases, stock changes, errors and 404s."""
    mix = mix or Mix()
    rng = random.Random(seed)
    catalogue = _products(products, rng)
    out: list[PriceObservation] = []
    edges = [mix.error, mix.gone, mix.drop, mix.increase, mix.stock]
    for i in range(1, len(edges)):
        edges[i] += edges[i - 1]
    for sweep, product, observed_at in _sweeps(catalogue, observations, rng):
        r = rng.random() if sweep else 1.0  # first sweep: every product is seen alive
        if r < edges[0]:
            out.append(_observation(product, observed_at, Outcome.ERROR, None, "timeout"))
            continue
        if r < edges[1]:
            out.append(_observation(product, observed_at, Outcome.GONE, 404, "http_404"))
            continue
        if r < edges[2]:
            product.price = (product.price * Decimal("0.9")).quantize(CENT)
        elif r < edges[3]:
            product.price = (product.price * Decimal("1.1")).quantize(CENT)
        elif r < edges[4]:
            product.availability = (
                Availability.OUT_OF_STOCK
                if product.availability is Availability.IN_STOCK
                else Availability.IN_STOCK
            )
        out.append(_observation(product, observed_at))
    return out


def unchanged(products: int, observations: int, seed: int = 1) -> list[PriceObservation]:
    """Every product keeps its price: after the first sweep nothing changes."""
    rng = random.Random(seed)
    catalogue = _products(products, rng)
    return [_observation(p, at) for _, p, at in _sweeps(catalogue, observations, rng)]


def changed(products: int, observations: int, seed: int = 1) -> list[PriceObservation]:
    """Every observation after the first sweep changes the price (alternately +1 and -1)."""
    rng = random.Random(seed)
    catalogue = _products(products, rng)
    base = {p.product_id: p.price for p in catalogue}
    out: list[PriceObservation] = []
    for sweep, product, observed_at in _sweeps(catalogue, observations, rng):
        product.price = base[product.product_id] + (1 if sweep % 2 else 0)
        out.append(_observation(product, observed_at))
    return out


def build(kind: str, products: int, observations: int, seed: int = 1) -> list[PriceObservation]:
    if kind == "realistic":
        return realistic(products, observations, seed)
    if kind == "unchanged":
        return unchanged(products, observations, seed)
    if kind == "changed":
        return changed(products, observations, seed)
    raise ValueError(f"unknown stream kind {kind!r}; one of {', '.join(KINDS)}")
