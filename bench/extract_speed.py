"""Extraction speed: today's extractor chain against the chain before issue 17, same run.

    .venv/bin/python -m bench.extract_speed [--pages 200] [--repeats 5]

Pages: ``bench.pages`` (realistic 100-300 KB product pages: the fixture corpus padded with a
mega-menu, a grid of product cards, inline state and scripts). Both chains read the same
bytes, decoded as the fetcher does.

* **candidate**: ``producers.extractors.chain.extract`` as it is now (lexbor parse, every
  source read, the buy box searched near the title first);
* **baseline**: the chain as it was on main before issue 17 (``BASELINE_COMMIT``: lxml/parsel
  parse, JSON-LD / microdata / OpenGraph, first price wins, the out-of-stock text walk), read
  from git into a scratch package, so both run in this process on this machine's load.

Figure: pages per CPU-second of this process (``time.process_time``; one thread, so per
core); best and median of ``--repeats`` passes. Also printed: the lexbor and lxml parse
alone (the floor of each), the load average before and after, and the aim (>= 200/s).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from parsel import Selector
from selectolax.lexbor import LexborHTMLParser

from producers.extractors.chain import extract

from .pages import BenchPage, build_pages

BASELINE_COMMIT = "070fce8237b322c24a251dae5ce29633da118b61"  # main before issue 17
AIM_PAGES_PER_CORE_SECOND = 200.0
_BASELINE_FILES = {
    "producers/extract.py": "chain.py",
    "producers/extractors/adapters.py": "adapters.py",
    "producers/extractors/base.py": "base.py",
    "producers/extractors/dom.py": "dom.py",
    "producers/extractors/jsonld.py": "jsonld.py",
    "producers/extractors/microdata.py": "microdata.py",
    "producers/extractors/opengraph.py": "opengraph.py",
    "producers/extractors/values.py": "values.py",
}
_PACKAGE = "pw_baseline_extractors"


def load_baseline(commit: str, scratch: Path) -> ModuleType:
    """The old chain's modules from ``commit``, as the package ``pw_baseline_extractors``."""
    root = Path(__file__).resolve().parents[1]
    package = scratch / _PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    for source, target in _BASELINE_FILES.items():
        text = subprocess.run(
            ["git", "show", f"{commit}:{source}"],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        # Its imports of its own modules point at the scratch package.
        text = re.sub(r"\bproducers\.extractors\.(\w+)", rf"{_PACKAGE}.\1", text)
        (package / target).write_text(text)
    sys.path.insert(0, str(scratch))
    return importlib.import_module(f"{_PACKAGE}.chain")


def cpu_rate(
    fn: Callable[[BenchPage], object], pages: list[BenchPage], repeats: int
) -> list[float]:
    rates = []
    for _ in range(repeats):
        gc.collect()
        began = time.process_time()
        for page in pages:
            fn(page)
        rates.append(len(pages) / (time.process_time() - began))
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-commit", default=BASELINE_COMMIT)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    pages = build_pages(args.pages)
    sizes = sorted(len(p.body) for p in pages)
    with tempfile.TemporaryDirectory() as scratch:
        baseline = load_baseline(args.baseline_commit, Path(scratch))
        figures = {
            "candidate (today's chain)": cpu_rate(
                lambda p: extract(p.body.decode("utf-8"), p.url), pages, args.repeats
            ),
            "baseline (chain before issue 17)": cpu_rate(
                lambda p: baseline.extract(p.body.decode("utf-8"), p.url), pages, args.repeats
            ),
            "lexbor parse alone": cpu_rate(
                lambda p: LexborHTMLParser(p.body.decode("utf-8")), pages, args.repeats
            ),
            "lxml (parsel) parse alone": cpu_rate(
                lambda p: Selector(text=p.body.decode("utf-8"), type="html"), pages, args.repeats
            ),
        }
    load_after = os.getloadavg()
    print(
        f"{len(pages)} pages, {sizes[0] // 1000}-{sizes[-1] // 1000} KB "
        f"(median {sizes[len(sizes) // 2] // 1000} KB), {args.repeats} passes, one core"
    )
    cores = os.cpu_count()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({cores} cores)")
    print("what".ljust(36) + "pages/core-s best".ljust(20) + "median")
    for name, rates in figures.items():
        print(name.ljust(36) + f"{max(rates):.0f}".ljust(20) + f"{statistics.median(rates):.0f}")
    candidate = statistics.median(figures["candidate (today's chain)"])
    old = statistics.median(figures["baseline (chain before issue 17)"])
    print(f"ratio candidate/baseline (medians): {candidate / old:.2f}")
    verdict = "met" if candidate >= AIM_PAGES_PER_CORE_SECOND else "MISSED"
    print(f"aim >= {AIM_PAGES_PER_CORE_SECOND:.0f} pages/core-s: {verdict} ({candidate:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
