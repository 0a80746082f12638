"""Extraction quality on a corpus of real product pages: price and availability F1.

    .venv/bin/python -m bench.extract_corpus ../shared/corpus/product-pages [--url]
        [--half development|held-out|all] [--show-errors]

The corpus directory holds ``ground-truth.json`` (per page id: ``url``, accepted ``price``
values, ``availability``), ``html/<id>.html.gz`` and optionally ``peers/<system>.json``
(what other extractors returned on the same pages). Pages are read in this process by the
code behind ``pricewatch extract`` (``producers.extract_command.extract_text``), without their
URL (no site adapter: how the peers were measured) or, with ``--url``, with it.

The metric is the product-extraction benchmark's own: F1 over pages, a price matching as a
Decimal (a "24.990" annotation also accepts 24990: a dot read as a decimal point in a
currency that groups thousands with it), an empty availability counting as InStock.

Shops are split into a **development** half and a **held-out** half by a fixed rule (the
first byte of the SHA-256 of the shop's name, i.e. its registrable domain without the public
suffix, even or odd), so that rules are developed on one half and checked on shops they were
never looked at with. Every table prints both halves and the total.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit

from pricewatch.contract.records import Availability
from pricewatch.settings import Settings
from producers.extract_command import extract_text

HALVES = ("development", "held-out")
NO_URL = "file:///saved-page.html"  # a saved page read without knowing where it came from
_OUT_OF_STOCK = {Availability.OUT_OF_STOCK, Availability.DISCONTINUED}
# Second-level labels under a two-letter country code that are not a shop's name
# ("co.uk", "com.br"): enough of the public-suffix rules to name a shop by its domain.
_GENERIC_SECOND_LEVEL = {"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or"}


def shop_of(url: str) -> str:
    """The shop's name: its registrable domain without the public suffix
    ("www.ebay.co.uk" -> "ebay"), so that one shop's country sites fall in the same half."""
    labels = (urlsplit(url).hostname or "").lower().split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _GENERIC_SECOND_LEVEL:
        return labels[-3]
    return labels[-2] if len(labels) >= 2 else labels[0]


def half_of(url: str) -> str:
    return HALVES[hashlib.sha256(shop_of(url).encode()).digest()[0] % 2]


@dataclass(frozen=True)
class Prediction:
    price: str | None
    availability: str  # "InStock" / "OutOfStock", the benchmark's two values


def predict(root: Path, page_id: str, url: str | None, settings: Settings) -> Prediction:
    html = gzip.decompress((root / "html" / f"{page_id}.html.gz").read_bytes())
    found = extract_text(settings, html.decode("utf-8", errors="replace"), url or NO_URL)
    stock = "OutOfStock" if found.availability in _OUT_OF_STOCK else "InStock"
    return Prediction(None if found.price is None else format(found.price, "f"), stock)


def _price_matches(accepted: list[str], predicted: str | None) -> tuple[int, int, int]:
    """(tp, fp, fn) for one page's price, as the benchmark counts them."""
    true = {Decimal(x) for x in accepted} | {
        Decimal(x.strip().replace(".", ""))
        for x in accepted
        if re.fullmatch(r"\d+\.\d{3}", x.strip())
    }
    if predicted is None:
        return (0, 0, 1) if true else (0, 0, 0)
    try:
        value: Decimal | None = Decimal(predicted)
    except InvalidOperation:
        value = None
    if value in true:
        return 1, 0, 0
    return (0, 1, 1) if true else (0, 1, 0)


def _label_matches(accepted: list[str], predicted: str | None) -> tuple[int, int, int]:
    if predicted is None:
        return (0, 0, 1) if accepted else (0, 0, 0)
    if predicted in accepted:
        return 1, 0, 0
    return (0, 1, 1) if accepted else (0, 1, 0)


@dataclass(frozen=True)
class Score:
    f1: float
    precision: float
    recall: float

    def __str__(self) -> str:
        return f"{self.f1:.3f} ({self.precision:.3f}/{self.recall:.3f})"


def score(truth: dict[str, dict], predicted: dict[str, dict[str, str]], attribute: str) -> Score:
    tp = fp = fn = 0
    for page_id, facts in truth.items():
        guess = predicted.get(page_id, {}).get(attribute)
        accepted = list(facts.get(attribute, []))
        if attribute == "price":
            a, b, c = _price_matches(accepted, guess)
        else:
            a, b, c = _label_matches(accepted, guess)
        tp, fp, fn = tp + a, fp + b, fn + c
    if fp == fn == 0:
        return Score(1.0, 1.0, 1.0)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return Score(2 * p * r / (p + r) if p + r else 0.0, p, r)


def as_benchmark_record(prediction: Prediction) -> dict[str, str]:
    # The benchmark's record: "OutOfStock" scored as its own attribute too.
    record = {
        "availability": prediction.availability,
        prediction.availability: prediction.availability,
    }
    if prediction.price is not None:
        record["price"] = prediction.price
    return record


def load_peers(root: Path) -> dict[str, dict[str, dict[str, str]]]:
    peers: dict[str, dict[str, dict[str, str]]] = {}
    for path in sorted((root / "peers").glob("*.json")) if (root / "peers").exists() else []:
        records = json.loads(path.read_text())
        for record in records.values():  # the benchmark: empty availability counts as InStock
            record.setdefault("availability", "InStock")
            record.setdefault(record["availability"], record["availability"])
        peers[path.stem] = records
    return peers


def table(
    truth: dict[str, dict], systems: dict[str, dict[str, dict[str, str]]], title: str
) -> list[str]:
    attributes = ("price", "availability", "OutOfStock")
    lines = [f"{title}: {len(truth)} pages; F1 (precision/recall)"]
    lines.append("  " + "system".ljust(16) + "".join(a.ljust(26) for a in attributes))
    for name, predicted in systems.items():
        cells = "".join(str(score(truth, predicted, a)).ljust(26) for a in attributes)
        lines.append("  " + name.ljust(16) + cells)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="directory with ground-truth.json and html/")
    parser.add_argument("--url", action="store_true", help="pass each page's URL (site adapters)")
    parser.add_argument("--half", choices=(*HALVES, "all"), default="all")
    parser.add_argument("--show-errors", action="store_true", help="list every miss")
    args = parser.parse_args(argv)

    truth_all: dict[str, dict] = json.loads((args.corpus / "ground-truth.json").read_text())
    halves = {page_id: half_of(facts["url"]) for page_id, facts in truth_all.items()}
    wanted = HALVES if args.half == "all" else (args.half,)
    truth = {k: v for k, v in sorted(truth_all.items()) if halves[k] in wanted}
    settings = Settings()
    started = time.perf_counter()
    ours = {
        page_id: predict(args.corpus, page_id, facts["url"] if args.url else None, settings)
        for page_id, facts in truth.items()
    }
    elapsed = time.perf_counter() - started
    systems = {"Pricewatch": {k: as_benchmark_record(p) for k, p in ours.items()}}
    systems.update(load_peers(args.corpus))

    how = "with their URLs (site adapters on)" if args.url else "without their URLs"
    print(f"Pages read {how}, {len(truth) / elapsed:.0f} pages/s")
    for half in wanted:
        subset = {k: v for k, v in truth.items() if halves[k] == half}
        shops = sorted({shop_of(v["url"]) for v in subset.values()})
        print("\n".join(table(subset, systems, f"{half} half ({len(shops)} shops)")))
    if len(wanted) > 1:
        print("\n".join(table(truth, systems, "total")))
    in_stock_read_out = [
        k
        for k, v in truth.items()
        if "InStock" in v.get("availability", []) and ours[k].availability == "OutOfStock"
    ]
    print(f"in-stock pages read as out of stock: {len(in_stock_read_out)}")
    if args.show_errors:
        for page_id, facts in truth.items():
            got = ours[page_id]
            accepted = list(facts.get("price", []))
            if _price_matches(accepted, got.price) != (1, 0, 0) and (accepted or got.price):
                print(f"price {page_id[:12]} {facts['url']} want {accepted} got {got.price}")
            stock = list(facts.get("availability", []))
            if stock and got.availability not in stock:
                print(f"avail {page_id[:12]} {facts['url']} want {stock} got {got.availability}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
