"""``pricewatch extract``: a saved page and the demo shop, through the real command line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from aiohttp.test_utils import TestServer

from launcher.demo.shop import create_shop_app
from pricewatch.settings import Settings
from producers.extract_command import extract_file

PAGES = Path(__file__).parents[1] / "fixtures" / "pages"
COMMAND = [sys.executable, "-m", "launcher.cli", "extract"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRICEWATCH_")}
    return env | {"PRICEWATCH_LOG_LEVEL": "WARNING"} | extra


def run(*args: str, **env: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, env=clean_env(**env), timeout=60
    )
    return done.returncode, json.loads(done.stdout)


def test_saved_page_with_a_price() -> None:
    code, shown = run(str(PAGES / "jsonld_de_related_carousel.html"))

    assert code == 0
    assert shown == {
        "price": "1226.00",
        "currency": "EUR",
        "availability": "in_stock",
        "title": "Lumio Barista Pro Siebträgermaschine",
        "extractor": "jsonld",
    }


def test_saved_page_without_a_price_exits_1_with_the_error() -> None:
    code, shown = run(str(PAGES / "no_price_category.html"))

    assert code == 1
    assert shown["price"] is None
    assert shown["error"] == "no_price_found"


def test_saved_page_uses_the_site_adapter_for_its_url() -> None:
    page = str(PAGES / "adapter_shop_es.html")
    adapters = str(PAGES / "adapters.json")

    _, generic = run(page)
    code, adapted = run(
        page,
        "--url",
        "https://www.tienda-sol.example/producto/sarten-28",
        PRICEWATCH_SITE_ADAPTERS_FILE=adapters,
    )

    assert generic["extractor"] == "opengraph"
    assert code == 0
    assert (adapted["price"], adapted["extractor"]) == ("0.89", "adapter")


async def run_async(*args: str) -> tuple[int, dict[str, object]]:
    process = await asyncio.create_subprocess_exec(
        *COMMAND, *args, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, json.loads(stdout)


async def test_demo_shop_url_with_allow_private() -> None:
    async with TestServer(create_shop_app(), host="127.0.0.1") as server:
        url = f"http://127.0.0.1:{server.port}/products/espresso-machine"

        code, shown = await run_async(url, "--allow-private")
        refused_code, refused = await run_async(url)
        gone_code, gone = await run_async(f"{url}-nope", "--allow-private")

    assert code == 0
    assert shown == {
        "price": "1226.00",
        "currency": "EUR",
        "availability": "in_stock",
        "title": "Lumio Barista Pro Espresso Machine",
        "extractor": "jsonld",
    }
    assert refused_code == 1
    assert str(refused["error"]).startswith("url_refused: ")
    assert (gone_code, gone["error"]) == (1, "http_404")


def test_saved_json_api_response_with_a_json_api_adapter(tmp_path: Path) -> None:
    adapters = tmp_path / "adapters.json"
    adapters.write_text(
        json.dumps(
            {
                "shop.example": {
                    "kind": "json_api",
                    "product_url_pattern": r"/p/(?P<sku>\w+)",
                    "api_url": "https://shop.example/api/{sku}.json",
                    "price": "price",
                    "currency": "currency",
                }
            }
        )
    )
    response = tmp_path / "response.json"
    response.write_text('{"price": "19.99", "currency": "USD"}')
    settings = Settings(site_adapters_file=adapters)

    shown = extract_file(settings, response, "https://shop.example/p/abc")

    assert (shown["price"], shown["currency"], shown["extractor"]) == ("19.99", "USD", "adapter")


def test_explain_lists_every_candidate_price_and_stock_signal_with_its_source() -> None:
    page = str(
        Path(__file__).parents[1] / "fixtures" / "sites" / "amazon_deal_with_list_price.html"
    )

    code, shown = run(page, "--explain")

    assert code == 0
    explained = shown["explain"]
    assert isinstance(explained, dict)
    assert explained["decision"] == "the visible buy box's price"
    seen = {(c["amount"], c["source"], c["role"]) for c in explained["price_candidates"]}
    assert ("34.99", "visible", "current") in seen
    assert ("49.99", "visible", "list") in seen  # the struck-through recommended price
    assert all(isinstance(c["score"], float) for c in explained["price_candidates"])
    assert {"availability": "in_stock", "source": "visible"}.items() <= explained["stock_signals"][
        0
    ].items()


def test_without_explain_the_output_is_unchanged() -> None:
    _, shown = run(str(PAGES / "jsonld_de_related_carousel.html"))

    assert "explain" not in shown
