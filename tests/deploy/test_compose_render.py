"""docker-compose's render tier: the scraper renders in the ``chromium`` service over CDP,
whose DevTools port is not published and which shares only an internal network with the
scrapers."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import pytest

from pricewatch.settings import Settings
from tests.deploy.files import load_compose

COMPOSE, _ = load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def test_the_scraper_renders_in_the_chromium_service(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("PRICEWATCH_"):
            monkeypatch.delenv(key)
    for key, value in SERVICES["scraper"]["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    cdp = urlsplit(settings.render_cdp_url or "")
    assert (cdp.scheme, cdp.hostname, cdp.port) == ("http", "chromium", 9222)
    assert SERVICES["scraper"]["depends_on"]["chromium"] == {"condition": "service_healthy"}
    assert "9222" in " ".join(SERVICES["chromium"]["healthcheck"]["test"])


def test_the_browser_is_reachable_only_by_the_scrapers() -> None:
    chromium = SERVICES["chromium"]
    assert "ports" not in chromium, "a published DevTools port is remote control of a browser"
    assert chromium["networks"] == ["render"]
    assert COMPOSE["networks"]["render"]["internal"] is True
    on_render = {name for name, s in SERVICES.items() if "render" in s.get("networks", [])}
    assert on_render == {"scraper", "chromium"}
    assert "default" in SERVICES["scraper"]["networks"]  # Kafka, PostgreSQL, the shops
