"""Every saved page in tests/fixtures/pages/ extracts to what expected.json says."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from producers.extractors.chain import adapter_for, extract, load_site_adapters

PAGES = Path(__file__).parents[1] / "fixtures" / "pages"
EXPECTED: dict[str, dict[str, Any]] = json.loads((PAGES / "expected.json").read_text("utf-8"))
ADAPTERS = load_site_adapters(PAGES / "adapters.json")


def test_every_saved_page_has_expected_values_and_every_expectation_a_page() -> None:
    assert sorted(EXPECTED) == sorted(p.name for p in PAGES.glob("*.html"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_saved_page(name: str) -> None:
    expected = EXPECTED[name]
    url = expected["url"]
    html = (PAGES / name).read_text("utf-8")

    result = extract(html, url, adapter=adapter_for(ADAPTERS, url))

    assert {
        "price": None if result.price is None else format(result.price, "f"),
        "currency": result.currency,
        "availability": None if result.availability is None else result.availability.value,
        "title": result.title,
        "extractor": result.extractor,
        "error": result.error,
    } == {key: value for key, value in expected.items() if key != "url"}
    if result.price is not None:
        assert result.price == Decimal(expected["price"])
