"""Which pages the fetcher renders: a user's adapter with ``render: true`` (which may say
nothing else), else the shipped adapter of the shop; a JSON-API adapter never."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from producers.extractors import sites
from producers.extractors.chain import adapter_for, parse_site_adapters
from producers.fetch import client
from producers.fetch.client import wants_render

ADAPTERS = parse_site_adapters(
    {
        "spa.example": {"kind": "html", "render": True},
        "plain.example": {"kind": "html", "price": ".price"},
        "api.example": {
            "kind": "json_api",
            "product_url_pattern": "/p/(?P<sku>\\w+)",
            "api_url": "https://api.example/{sku}",
            "price": "price",
        },
    }
)


@pytest.mark.parametrize(
    ("url", "rendered"),
    [
        ("https://spa.example/p/1", True),
        ("https://www.spa.example/p/1", True),
        ("https://plain.example/p/1", False),
        ("https://api.example/p/1", False),
        ("https://www.amazon.de/dp/B000000001", False),  # shipped, and it reads statically
        ("https://unknown.example/p/1", False),
    ],
)
def test_render_follows_the_adapter(url: str, rendered: bool) -> None:
    assert wants_render(adapter_for(ADAPTERS, url), url) is rendered


def test_a_shipped_adapter_can_ask_for_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    amazon = sites.adapter_for_host("www.amazon.de")
    assert amazon is not None
    rendering = dataclasses.replace(amazon, render=True)
    monkeypatch.setattr(client, "adapter_for_host", lambda host: rendering)
    assert wants_render(None, "https://www.amazon.de/dp/B000000001")
    # A user's adapter for the host replaces the shipped one, render flag included.
    assert not wants_render(
        adapter_for(ADAPTERS, "https://plain.example/"), "https://plain.example/"
    )


def test_an_html_adapter_needs_a_price_selector_unless_it_renders() -> None:
    with pytest.raises(ValidationError, match="price selector"):
        parse_site_adapters({"h": {"kind": "html", "render": False}})
    only_render = parse_site_adapters({"h": {"kind": "html", "render": True}})["h"]
    assert only_render.price is None
