"""Value parsing shared by every extractor: prices, currencies, availability, titles.

Two kinds of price strings:

* machine-readable values (JSON-LD ``price``, microdata ``content``, ``og:price:amount``):
  ``parse_price``, where a single dot is always a decimal point (schema.org's own rule);
* text a shopper sees ("1.226 €", "1 234,56 zł", "CHF 1'299.-"): ``single_price_text`` when
  the text must hold exactly one price (an element of the buy box), ``parse_price_text``
  for a field that states a price among other words ("From 26 to 50 €", "3,49 zł 1,75 zł":
  the first), which falls back to ``price-parser`` under our currency rules (zero- and
  three-decimal currencies, a declared currency wins).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from price_parser import Price

from pricewatch.contract.records import Availability

# The wire format allows 6 decimal places and 18 digits; anything bigger is not a real price.
MAX_DECIMAL_PLACES = 6
MAX_INTEGER_DIGITS = 12
MAX_TITLE_CHARS = 500

_NUMERIC_LABEL = re.compile(r"^\d+$")
_NUMBER = re.compile(r"\d(?:[\d.,'\s\u00a0\u202f\u2009]*\d)?")
_SPACES = re.compile(r"[\s\u00a0\u202f\u2009]+")


# --- Machine-readable prices -------------------------------------------------------------


def parse_price(value: object) -> Decimal | None:
    """A positive Decimal from a structured price: number, or string in US or EU notation.

    Strings: "79.99", "1,299.00", "1.226,00", "1'299.00", "€ 1.226,00", "12,-". A single
    dot is always a decimal point (schema.org's own rule); a single comma followed by
    exactly three digits is a thousands separator ("1,299"), otherwise a decimal comma.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return checked_amount(Decimal(value))
    if isinstance(value, Decimal):
        return checked_amount(value)
    if isinstance(value, float):
        # Only reachable if a caller parsed JSON with floats; repr keeps what was written.
        return checked_amount(Decimal(repr(value)))
    if not isinstance(value, str):
        return None
    # Exactly one number, e.g. "EUR 79.99"; "10 - 20" or "2 for 5.00" is not one price.
    numbers = _NUMBER.findall(value)
    if len(numbers) != 1 or re.search(r"-\s*" + re.escape(numbers[0]), value):
        return None
    text = _SPACES.sub("", numbers[0]).replace("'", "")
    last_dot, last_comma = text.rfind("."), text.rfind(",")
    if last_dot >= 0 and last_comma >= 0:
        decimal_mark = "." if last_dot > last_comma else ","
        thousands_mark = "," if decimal_mark == "." else "."
        text = text.replace(thousands_mark, "")
        if text.count(decimal_mark) > 1:
            return None
        text = text.replace(decimal_mark, ".")
    elif last_comma >= 0:
        parts = text.split(",")
        if len(parts) > 2 or len(parts[1]) == 3:
            if not all(_NUMERIC_LABEL.match(p) for p in parts[1:]) or any(
                len(p) != 3 for p in parts[1:]
            ):
                return None
            text = "".join(parts)
        else:
            text = ".".join(parts)
    elif text.count(".") > 1:
        parts = text.split(".")
        if any(len(p) != 3 for p in parts[1:]):
            return None
        text = "".join(parts)
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    return checked_amount(amount)


def checked_amount(amount: Decimal) -> Decimal | None:
    """``amount`` if it can be a real price on the wire, else None."""
    if not amount.is_finite() or amount <= 0:
        # Zero is what many shops print for "price on request" or a sold-out placeholder;
        # publishing it would look like a 100 % price drop.
        return None
    amount = Decimal(format(amount, "f"))  # no exponent notation on the wire
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMAL_PLACES:
        amount = amount.normalize()
        exponent = amount.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > MAX_DECIMAL_PLACES:
            return None
        amount = Decimal(format(amount, "f"))
    if amount >= Decimal(10) ** MAX_INTEGER_DIGITS:
        return None
    return amount


# --- Currencies ----------------------------------------------------------------------------

_CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")
# Symbols that name exactly one currency; "$" or "kr" do not, so they stay unknown here.
_UNAMBIGUOUS_SYMBOLS = {"€": "EUR", "£": "GBP", "₹": "INR", "₩": "KRW", "₺": "TRY", "₽": "RUB"}

# ISO 4217 codes recognised inside visible text ("CHF 1'299.-", "1 234,56 PLN"). A fixed set,
# so that "USB 3.0" or "SSD 512" are not read as currencies.
_ISO_TABLE = (
    "AED ARS AUD BGN BHD BRL BYN CAD CHF CLP CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR "
    "IQD ISK JOD JPY KRW KWD KZT LYD MAD MXN MYR NGN NOK NZD OMR PEN PHP PKR PLN QAR RON RSD "
    "RUB SAR SEK SGD THB TND TRY TWD UAH USD VND ZAR"
)
ISO_CODES = frozenset(_ISO_TABLE.split())
# Longest first: "US$" before "$". "$" alone is read as USD in visible text, a guess that a
# currency the page declares (priceCurrency, og:price:currency) always overrides.
_TEXT_SYMBOLS: tuple[tuple[str, str], ...] = (
    ("US$", "USD"),
    ("CA$", "CAD"),
    ("AU$", "AUD"),
    ("NZ$", "NZD"),
    ("HK$", "HKD"),
    ("MX$", "MXN"),
    ("R$", "BRL"),
    ("C$", "CAD"),
    ("A$", "AUD"),
    ("S$", "SGD"),
    ("zł", "PLN"),
    ("Kč", "CZK"),
    ("Ft", "HUF"),
    ("lei", "RON"),
    ("руб", "RUB"),  # noqa: RUF001
    ("тг", "KZT"),
    ("TL", "TRY"),
    ("KD", "KWD"),
    ("원", "KRW"),
    ("円", "JPY"),
    ("₸", "KZT"),
    ("₫", "VND"),
    ("₱", "PHP"),
    ("฿", "THB"),
    ("₦", "NGN"),
    ("€", "EUR"),
    ("£", "GBP"),
    ("¥", "JPY"),
    ("￥", "JPY"),
    ("₹", "INR"),
    ("₩", "KRW"),
    ("₺", "TRY"),
    ("₽", "RUB"),
    ("₴", "UAH"),
    ("₪", "ILS"),
    ("$", "USD"),
)
_TEXT_SYMBOL_PATTERNS = tuple(
    (
        re.compile(
            (r"(?<![A-Za-z])" if symbol[0].isalpha() else "")
            + re.escape(symbol)
            + (r"(?![A-Za-z])" if symbol[-1].isalpha() else "")
        ),
        code,
    )
    for symbol, code in _TEXT_SYMBOLS
)
_CODE_IN_TEXT = re.compile(r"(?<![A-Za-z])([A-Z]{3})(?![A-Za-z])")

ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK"})
THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


def parse_currency(value: object) -> str | None:
    """An ISO 4217 code, upper-case; None when the value is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text in _UNAMBIGUOUS_SYMBOLS:
        return _UNAMBIGUOUS_SYMBOLS[text]
    code = text.upper()
    return code if _CURRENCY_CODE.match(code) else None


def currency_in_text(text: str) -> str | None:
    """The currency a visible price names by ISO code or symbol ("CHF", "zł", "€", "$")."""
    for match in _CODE_IN_TEXT.finditer(text):
        if match.group(1) in ISO_CODES:
            return match.group(1)
    for pattern, code in _TEXT_SYMBOL_PATTERNS:
        if pattern.search(text):
            return code
    return None


# --- Visible prices --------------------------------------------------------------------------

# "1'299.-" (or an en or em dash), "12,-": a dash standing for zero minor units.
_ZERO_MINOR_UNITS = re.compile(r"(\d)[.,]\s*[-\u2013\u2014]+")
_TEXT_NUMBER = re.compile(r"[.,]?\d(?:[\d.,'\u00a0\u202f\u2009 ]*\d)?")
_GROUPING_SPACE = re.compile(r"['\u00a0\u202f\u2009 ]")
_SPACE_GROUPED = re.compile(r"^\d{1,3}(?:['\u00a0\u202f\u2009 ]\d{3})+(?:[.,]\d+)?$")
_MINUS_BEFORE = re.compile(r"[-\u2212]\s*$")


def single_price_text(
    text: str, declared_currency: str | None = None
) -> tuple[Decimal | None, str | None]:
    """(amount, currency) from text that holds exactly one price, as a shopper reads it.

    "1.226 €" -> 1226 EUR, "1 234,56 zł" -> 1234.56 PLN, "$1,299.00" -> 1299.00 USD,
    ",89" -> 0.89, "CHF 1'299.-" (any dash) -> 1299 CHF, "¥1,200" -> 1200 JPY. A single separator
    followed by exactly three digits groups thousands (except for three-decimal currencies);
    in zero-decimal currencies (JPY, KRW, ...) every separator does. ``declared_currency``,
    what the page states in a machine-readable field, wins over a symbol in the text. Text
    with two numbers ("10 - 20 €", "2 for 5.00"), a negative number or a percentage is not
    one price: None.
    """
    currency = parse_currency(declared_currency) or currency_in_text(text)
    amount = _single_amount(text, currency)
    return (checked_amount(amount) if amount is not None else None), currency


def _single_amount(text: str, currency: str | None) -> Decimal | None:
    normalized = _ZERO_MINOR_UNITS.sub(r"\1", text.replace("\u2019", "'"))
    numbers = list(_TEXT_NUMBER.finditer(normalized))
    if len(numbers) == 2 and len({_read_number(n.group(0), currency) for n in numbers}) == 1:
        # One price printed twice: a screen reader's copy beside the visible one.
        numbers = numbers[:1]
    if len(numbers) != 1 or _MINUS_BEFORE.search(normalized[: numbers[0].start()]):
        return None
    if normalized[numbers[0].end() :].lstrip().startswith("%"):
        return None  # "40% off" is a saving, not a price
    return _read_number(numbers[0].group(0), currency)


def read_price_text(
    text: str, declared_currency: str | None = None
) -> tuple[Decimal | None, str | None]:
    """(amount, currency) a reader takes from a price field, zero included ("Free!" -> 0):
    the single price when there is one, else ``price-parser``'s reading (the first price of
    "3,49 zł 1,75 zł", the low end of a range), checked against the currency's decimals."""
    currency = parse_currency(declared_currency) or currency_in_text(text)
    amount = _single_amount(text, currency)
    if amount is not None:
        return amount, currency
    first = _TEXT_NUMBER.search(text)
    if first is not None and _MINUS_BEFORE.search(text[: first.start()]):
        return None, currency  # a negative amount is a refund or a saving
    parsed = Price.fromstring(
        text,
        currency_hint=declared_currency,
        decimal_separator="." if currency in THREE_DECIMAL_CURRENCIES else None,
    )
    amount = parsed.amount
    if amount is None or not amount.is_finite() or amount < 0:
        return None, currency
    if currency in ZERO_DECIMAL_CURRENCIES and amount != amount.to_integral_value():
        return None, currency
    currency = currency or currency_in_text(parsed.currency or "")
    return amount, currency


def parse_price_text(
    text: str, declared_currency: str | None = None
) -> tuple[Decimal | None, str | None]:
    """``read_price_text``, for publishing: a positive amount that fits the wire, or None."""
    amount, currency = read_price_text(text, declared_currency)
    return (checked_amount(amount) if amount is not None else None), currency


def _read_number(raw: str, currency: str | None) -> Decimal | None:
    if _GROUPING_SPACE.search(raw):
        if not _SPACE_GROUPED.match(raw):
            return None
        raw = _GROUPING_SPACE.sub("", raw)
    dots, commas = raw.count("."), raw.count(",")
    if dots and commas:
        decimal_mark = "." if raw.rfind(".") > raw.rfind(",") else ","
        grouping = "," if decimal_mark == "." else "."
        whole, _, fraction = raw.rpartition(decimal_mark)
        if decimal_mark in whole or not _grouped(whole.split(grouping)):
            return None
        digits = whole.replace(grouping, "") + "." + fraction
    elif dots + commas > 1:
        if not _grouped(re.split(r"[.,]", raw)):
            return None
        digits = re.sub(r"[.,]", "", raw)
    elif dots + commas == 1:
        whole, _, fraction = raw.partition("." if dots else ",")
        thousands = currency in ZERO_DECIMAL_CURRENCIES or (
            len(fraction) == 3
            and currency not in THREE_DECIMAL_CURRENCIES
            and whole not in ("", "0")
        )
        if thousands and not _grouped([whole, fraction]):
            return None
        digits = whole + fraction if thousands else (whole or "0") + "." + fraction
    else:
        digits = raw
    try:
        return checked_amount(Decimal(digits))
    except InvalidOperation:
        return None


def _grouped(parts: list[str]) -> bool:
    """True for thousands groups: "1", "226", "000" (a first group of 1-3 digits)."""
    first, rest = parts[0], parts[1:]
    return (
        1 <= len(first) <= 3 and first.isdigit() and all(len(p) == 3 and p.isdigit() for p in rest)
    )


# --- Availability --------------------------------------------------------------------------

_SCHEMA_PREFIXES = ("https://schema.org/", "http://schema.org/", "schema:", "schema.org/")
_AVAILABILITY_BY_NAME: dict[str, Availability] = {
    # schema.org ItemAvailability, every value.
    "instock": Availability.IN_STOCK,
    "limitedavailability": Availability.IN_STOCK,
    "instoreonly": Availability.IN_STOCK,
    "onlineonly": Availability.IN_STOCK,
    "outofstock": Availability.OUT_OF_STOCK,
    "soldout": Availability.OUT_OF_STOCK,
    "reserved": Availability.OUT_OF_STOCK,
    "discontinued": Availability.DISCONTINUED,
    "preorder": Availability.PREORDER,
    "presale": Availability.PREORDER,
    "backorder": Availability.BACKORDER,
    "madetoorder": Availability.BACKORDER,
    # OpenGraph / Facebook catalog spellings ("in stock", "oos", "available for order").
    "oos": Availability.OUT_OF_STOCK,
    "availablefororder": Availability.BACKORDER,
    "pending": Availability.PREORDER,
}


def parse_availability(value: object) -> Availability | None:
    """Map a schema.org ItemAvailability (full URL or bare name) onto ``Availability``.

    None when the page says nothing; UNKNOWN when it says something we do not recognise.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    name = value.strip()
    for prefix in _SCHEMA_PREFIXES:
        if name.lower().startswith(prefix):
            name = name[len(prefix) :]
            break
    key = re.sub(r"[^a-z]", "", name.lower())
    return _AVAILABILITY_BY_NAME.get(key, Availability.UNKNOWN)


# What shops print when a product cannot be bought, per language. Matched on whole words in
# the page's main visible text, and only when no structured availability was found.
OUT_OF_STOCK_PHRASES: tuple[str, ...] = (
    # en
    "out of stock",
    "sold out",
    "currently unavailable",
    "temporarily unavailable",
    # de
    "ausverkauft",
    "nicht verfügbar",
    "nicht lieferbar",
    "nicht auf lager",
    # fr
    "rupture de stock",
    "épuisé",
    "épuisée",
    # es
    "agotado",
    "agotada",
    "sin existencias",
    # it
    "esaurito",
    "esaurita",
    "non disponibile",
    # nl
    "uitverkocht",
    "niet op voorraad",
    # pl
    "brak w magazynie",
    "niedostępny",
    "wyprzedany",
    # pt
    "esgotado",
    "indisponível",
    # sv / da / no
    "slutsåld",
    "udsolgt",
    "utsolgt",
    # cs
    "vyprodáno",
)
_OUT_OF_STOCK = re.compile(
    r"(?<!\w)(?:" + "|".join(re.escape(p) for p in OUT_OF_STOCK_PHRASES) + r")(?!\w)"
)


def availability_from_text(text: str) -> Availability | None:
    """OUT_OF_STOCK when the text says so in one of ``OUT_OF_STOCK_PHRASES``, else None."""
    normalized = " ".join(text.lower().split())
    return Availability.OUT_OF_STOCK if _OUT_OF_STOCK.search(normalized) else None


def clean_title(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    title = " ".join(value.split())
    return title[:MAX_TITLE_CHARS] or None
