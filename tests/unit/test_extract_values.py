"""Visible prices by locale, currencies from codes and symbols, availability in words."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pricewatch.contract.records import Availability
from producers.extractors.chain import (
    availability_from_text,
    currency_in_text,
    parse_availability,
    parse_price_text,
)
from producers.extractors.values import read_price_text, single_price_text


@pytest.mark.parametrize(
    ("text", "amount", "currency"),
    [
        ("1.226 €", "1226", "EUR"),
        ("1 234,56 zł", "1234.56", "PLN"),
        ("1\u00a0234,56\u00a0zł", "1234.56", "PLN"),
        ("1\u202f234,56 €", "1234.56", "EUR"),
        ("$1,299.00", "1299.00", "USD"),
        (",89", "0.89", None),
        (",89 €", "0.89", "EUR"),
        ("CHF 1'299.\u2013", "1299", "CHF"),  # en dash
        ("CHF 1\u2019299.-", "1299", "CHF"),  # typographic apostrophe
        ("CHF 1'299.\u2014", "1299", "CHF"),  # em dash
        ("1.226,00 €", "1226.00", "EUR"),
        ("12,99 €", "12.99", "EUR"),
        ("£149", "149", "GBP"),
        ("¥1,200", "1200", "JPY"),
        ("¥1.200", "1200", "JPY"),
        ("€ 0,99", "0.99", "EUR"),
        ("EUR 1.226,00", "1226.00", "EUR"),
        ("79,- €", "79", "EUR"),
        ("US$ 12.50", "12.50", "USD"),
        ("C$ 45.00", "45.00", "CAD"),
        ("R$ 1.299,90", "1299.90", "BRL"),
        ("1 299,00 Kč", "1299.00", "CZK"),
        ("12 990 Ft", "12990", "HUF"),
        ("149,99 lei", "149.99", "RON"),
        ("₹1,499", "1499", "INR"),
        ("3.500 KWD", "3.500", "KWD"),
        ("1,234,567.89 USD", "1234567.89", "USD"),
        ("1.234.567,89 €", "1234567.89", "EUR"),
        ("0.125 €", "0.125", "EUR"),
        ("Now only 59.90", "59.90", None),
    ],
)
def test_parse_price_text(text: str, amount: str, currency: str | None) -> None:
    assert parse_price_text(text) == (Decimal(amount), currency)


def test_a_declared_currency_wins_over_a_symbol() -> None:
    assert parse_price_text("$1,299.00", "CAD") == (Decimal("1299.00"), "CAD")
    assert parse_price_text("1.226 €", "chf") == (Decimal("1226"), "CHF")


def test_a_declared_currency_changes_how_separators_read() -> None:
    # Three decimals in Kuwaiti dinar; no decimals at all in yen.
    assert parse_price_text("1.250", "KWD") == (Decimal("1.250"), "KWD")
    assert parse_price_text("1.250", "EUR") == (Decimal("1250"), "EUR")
    assert parse_price_text("1,5", "JPY") == (None, "JPY")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "free",
        "call us",
        "-5 €",
        "\u2212 5 €",  # minus sign
        "10 - 20 €",
        "2 for 5.00",
        "0,00 €",
        "1.2.3",
        "12 34 €",
    ],
)
def test_single_price_text_refuses_what_is_not_one_price(text: str) -> None:
    assert single_price_text(text)[0] is None


@pytest.mark.parametrize(
    "text", ["", "free", "call us", "-5 €", "\u2212 5 €", "0,00 €", "1.2.3", "40% off"]
)
def test_parse_price_text_refuses_non_prices(text: str) -> None:
    assert parse_price_text(text)[0] is None


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("10 - 20 €", "10"),  # a range: its low end, as price-parser and shoppers read it
        ("3,49 zł 1,75 zł", "3.49"),  # two prices in one field: the first
        ("From 26 to 50 €", "26"),
        ("1.837, 32 €", "1837.32"),  # a space after the decimal comma
        ("$119. 95", "119.95"),
    ],
)
def test_a_price_field_with_more_than_one_number_reads_its_first_price(
    text: str, amount: str
) -> None:
    assert parse_price_text(text)[0] == Decimal(amount)


def test_a_free_price_reads_zero_but_is_never_published() -> None:
    assert read_price_text("Free!")[0] == 0
    assert parse_price_text("Free!")[0] is None


def test_three_decimal_currencies_named_in_the_text() -> None:
    assert parse_price_text(" 423.923 KD") == (Decimal("423.923"), "KWD")
    assert parse_price_text("123,456.789 OMR") == (Decimal("123456.789"), "OMR")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CHF 12", "CHF"),
        ("12 SEK", "SEK"),
        ("USB 3.0 cable", None),
        ("12 kr", None),
        ("€", "EUR"),
        ("zł", "PLN"),
        ("Złoty", None),
        ("A$ 12", "AUD"),
        ("$", "USD"),
    ],
)
def test_currency_in_text(text: str, expected: str | None) -> None:
    assert currency_in_text(text) == expected


SCHEMA_ORG_ITEM_AVAILABILITY = {
    "BackOrder": Availability.BACKORDER,
    "Discontinued": Availability.DISCONTINUED,
    "InStock": Availability.IN_STOCK,
    "InStoreOnly": Availability.IN_STOCK,
    "LimitedAvailability": Availability.IN_STOCK,
    "MadeToOrder": Availability.BACKORDER,
    "OnlineOnly": Availability.IN_STOCK,
    "OutOfStock": Availability.OUT_OF_STOCK,
    "PreOrder": Availability.PREORDER,
    "PreSale": Availability.PREORDER,
    "Reserved": Availability.OUT_OF_STOCK,
    "SoldOut": Availability.OUT_OF_STOCK,
}


@pytest.mark.parametrize("name", sorted(SCHEMA_ORG_ITEM_AVAILABILITY))
@pytest.mark.parametrize(
    "form", ["{}", "https://schema.org/{}", "http://schema.org/{}", "schema:{}", "{}/lower"]
)
def test_every_schema_org_item_availability(name: str, form: str) -> None:
    value = name.lower() if form == "{}/lower" else form.format(name)

    assert parse_availability(value) is SCHEMA_ORG_ITEM_AVAILABILITY[name]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("in stock", Availability.IN_STOCK),
        ("out of stock", Availability.OUT_OF_STOCK),
        ("oos", Availability.OUT_OF_STOCK),
        ("available for order", Availability.BACKORDER),
        ("preorder", Availability.PREORDER),
        ("discontinued", Availability.DISCONTINUED),
    ],
)
def test_opengraph_availability_spellings(value: str, expected: Availability) -> None:
    assert parse_availability(value) is expected


@pytest.mark.parametrize(
    "text",
    [
        "This item is Out of Stock.",
        "SOLD OUT",
        "Currently unavailable. We don't know when or if this item will be back.",
        "Leider ausverkauft",
        "Dieser Artikel ist derzeit nicht verfügbar",
        "Article en rupture de stock",
        "Épuisé",
        "Producto agotado",
        "Prodotto esaurito",
        "Dit product is uitverkocht",
        "Produkt: brak w magazynie",
        "Produto esgotado",
        "Varan är slutsåld",
    ],
)
def test_out_of_stock_phrases(text: str) -> None:
    assert availability_from_text(text) is Availability.OUT_OF_STOCK


@pytest.mark.parametrize(
    "text", ["In stock, ships today", "Sofort lieferbar", "stockout-free", "soldout2024", ""]
)
def test_no_out_of_stock_phrase(text: str) -> None:
    assert availability_from_text(text) is None
