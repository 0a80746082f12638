"""Reading price text: Pricewatch against price-parser on real-world price strings.

    .venv/bin/python -m bench.price_strings ../shared/corpus/price-strings

The directory holds ``examples.json`` (price-parser's own test data: ``{set, price_raw,
currency_raw, amount, currency}``; ``xfail*`` sets are strings price-parser itself reads
wrong). Each string is read three ways in the same run:

* **Pricewatch**: ``read_price_text`` (what a reader takes from the field, zero included);
* **single only**: ``single_price_text`` alone, the strict reader the buy box uses (and, before
  price-parser was adopted, the only text reader);
* **price-parser**: ``Price.fromstring(price_raw, currency_hint=currency_raw)``, as its tests
  call it.

A reading is right when the amount equals the annotation as a Decimal (no amount when the
annotation has none). Figures: strings outside the ``xfail`` sets, and all strings.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path

from price_parser import Price

from producers.extractors.values import read_price_text, single_price_text

Reader = Callable[[str, str | None], Decimal | None]


def _pricewatch(raw: str, hint: str | None) -> Decimal | None:
    return read_price_text(raw)[0]


def _single(raw: str, hint: str | None) -> Decimal | None:
    amount, _ = single_price_text(raw)
    return amount


def _price_parser(raw: str, hint: str | None) -> Decimal | None:
    return Price.fromstring(raw, currency_hint=hint).amount


READERS: dict[str, Reader] = {
    "Pricewatch": _pricewatch,
    "single only": _single,
    "price-parser": _price_parser,
}


def right(expected: object, amount: Decimal | None) -> bool:
    if expected is None:
        return amount is None
    try:
        return amount is not None and Decimal(str(expected)) == amount
    except InvalidOperation:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="directory with examples.json")
    parser.add_argument("--show-misses", action="store_true", help="Pricewatch's misses")
    args = parser.parse_args(argv)
    examples = [
        e for e in json.loads((args.corpus / "examples.json").read_text()) if e["price_raw"]
    ]
    outside = [e for e in examples if not e["set"].startswith("xfail")]
    print(f"{len(examples)} price strings, {len(outside)} outside price-parser's xfail sets")
    print("reader".ljust(14) + "outside xfail".ljust(22) + "all")
    for name, read in READERS.items():
        good_outside = sum(
            right(e["amount"], read(e["price_raw"], e["currency_raw"])) for e in outside
        )
        good_all = sum(
            right(e["amount"], read(e["price_raw"], e["currency_raw"])) for e in examples
        )
        print(
            name.ljust(14)
            + f"{good_outside}/{len(outside)} ({good_outside / len(outside):.1%})".ljust(22)
            + f"{good_all}/{len(examples)} ({good_all / len(examples):.1%})"
        )
    if args.show_misses:
        for e in outside:
            amount = _pricewatch(e["price_raw"], e["currency_raw"])
            if not right(e["amount"], amount):
                print(f"miss {e['set']}: {e['price_raw']!r} want {e['amount']} got {amount}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
