"""Blocked is not sold out: the block detector's rules on pages written after the general
shape of real interstitials (a captcha form, a JavaScript challenge, a bot-protection
script, a consent wall), and the pages that must not be mistaken for one."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from pricewatch.contract.records import Outcome, PriceObservation
from producers.fetch.blocked import (
    BOT_CHECK,
    CAPTCHA,
    CLOUDFLARE,
    CONSENT,
    SCAN_CHARS,
    detect_block,
)
from producers.fetch.client import _read_page
from producers.fetch.redirects import Response
from producers.fetch.retries import is_challenge

# A shop's "are you a robot?" page: a small form that posts the typed characters back.
CAPTCHA_PAGE = """<!doctype html><html><head><title>Shop</title></head><body>
<div class="a-box"><h4>Type the characters you see in this image</h4>
<form method="get" action="/errors/validateCaptcha" name="">
<input type=hidden name="amzn" value="x1"><img src="https://images.example/captcha/ab/Captcha_q.jpg">
<input id="captchacharacters" name="field-keywords" type="text"><button type="submit">Go</button>
</form></div></body></html>"""

# A JavaScript challenge as a CDN serves it: the page loads the provider's challenge script.
CHALLENGE_PAGE = """<!DOCTYPE html><html lang="en-US"><head><title>One moment</title>
<meta name="robots" content="noindex,nofollow"></head><body><div class="main-wrapper">
<noscript>Enable JavaScript and cookies to continue</noscript></div>
<script>(function(){window._cf_chl_opt={cvId: '3', cZone: 'shop.example', cType: 'managed'};
var a=document.createElement('script');
a.src='/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1?ray=1';
document.getElementsByTagName('head')[0].appendChild(a);}());</script></body></html>"""

HCAPTCHA_PAGE = """<html><body><h1>Too many requests</h1>
<form method="post" action="/verify"><div class="h-captcha" data-sitekey="k"></div>
<button>Continue</button></form><script src="https://js.hcaptcha.com/1/api.js"></script>
</body></html>"""

BOT_PROTECTION_PAGE = """<html><head><title>shop.example</title></head><body>
<script>var dd={'rt':'c','cid':'x','hsh':'y','host':'geo.captcha-delivery.com'}</script>
<script src="https://ct.captcha-delivery.com/c.js"></script></body></html>"""

CONSENT_WALL = """<html><body><div id="consent-wall" class="overlay">
<h2>Before you continue</h2><p>We use cookies.</p>
<form method="post" action="/consent/save"><button name="accept">Accept all</button>
<button name="reject">Reject all</button></form></div></body></html>"""

PRODUCT_WITH_REVIEW_CAPTCHA = """<html><head><script type="application/ld+json">
{"@type": "Product", "name": "Kettle", "offers": {"price": "49.90", "priceCurrency": "EUR",
"availability": "https://schema.org/InStock"}}</script></head><body><h1>Kettle</h1>
<form action="/reviews/post"><div class="g-recaptcha" data-sitekey="k"></div></form>
</body></html>"""

NO_PRICE_PAGE = "<html><body><h1>Kettle</h1><p>Coming soon.</p></body></html>"


def test_a_captcha_form_on_a_page_without_price_is_a_captcha() -> None:
    found = detect_block(200, {}, CAPTCHA_PAGE, price_found=False)
    assert found is not None and found.by == CAPTCHA
    assert found.rule == "captcha form"


def test_the_cf_mitigated_header_is_a_cloudflare_challenge_whatever_the_body() -> None:
    found = detect_block(403, {"cf-mitigated": "challenge"}, "")
    assert found is not None and (found.by, found.rule) == (
        CLOUDFLARE,
        "cf-mitigated: challenge header",
    )
    # Header names come in any case from a browser or a test.
    assert detect_block(200, {"CF-Mitigated": "Challenge"}, "", price_found=True) is not None


@pytest.mark.parametrize(
    ("status", "body", "by"),
    [
        (503, CHALLENGE_PAGE, CLOUDFLARE),
        (403, CHALLENGE_PAGE, CLOUDFLARE),
        (429, HCAPTCHA_PAGE, CAPTCHA),
        (403, BOT_PROTECTION_PAGE, BOT_CHECK),
        (404, CAPTCHA_PAGE, CAPTCHA),  # not "removed": a captcha says nothing of the product
    ],
)
def test_a_refusal_with_a_challenge_body_is_blocked(status: int, body: str, by: str) -> None:
    found = detect_block(status, {}, body)
    assert found is not None and found.by == by


def test_a_consent_wall_without_a_price_is_blocked_by_consent() -> None:
    found = detect_block(200, {}, CONSENT_WALL, price_found=False)
    assert found is not None and found.by == CONSENT


def test_redirects_to_a_consent_host_or_a_captcha_path_are_walls() -> None:
    to_consent = detect_block(
        200, {}, NO_PRICE_PAGE, redirected_to="https://consent.portal.example/?continue=x"
    )
    assert to_consent is not None and to_consent.by == CONSENT
    to_captcha = detect_block(
        200, {}, NO_PRICE_PAGE, redirected_to="https://shop.example/errors/validateCaptcha?x=1"
    )
    assert to_captcha is not None and to_captcha.by == CAPTCHA


@pytest.mark.parametrize(
    ("status", "body", "price_found"),
    [
        (200, PRODUCT_WITH_REVIEW_CAPTCHA, True),  # a price: never blocked by its body
        (200, CAPTCHA_PAGE, True),
        (200, NO_PRICE_PAGE, False),  # no price, no marker: "no price found", not blocked
        (403, "<html><body><h1>403 Forbidden</h1></body></html>", None),  # a plain refusal
        (429, "Too Many Requests", None),
        (404, "<html><body>Not found</body></html>", None),
        (304, CAPTCHA_PAGE, None),  # no body of its own to judge
    ],
)
def test_pages_that_are_not_blocks(status: int, body: str, price_found: bool | None) -> None:
    assert detect_block(status, {}, body, price_found=price_found) is None


def test_only_the_start_of_a_large_body_is_scanned() -> None:
    late = "<p>" + "x" * SCAN_CHARS + "</p>" + CAPTCHA_PAGE
    assert detect_block(403, {}, late) is None
    assert detect_block(403, {}, CAPTCHA_PAGE + late) is not None


def _response(status: int, body: str, final: str, **headers: str) -> Response:
    return Response(
        status=status, final_url=URL(final), body=body.encode(), charset="utf-8", headers=headers
    )


def test_read_page_makes_a_block_an_error_blocked_never_gone_or_a_price() -> None:
    url = "https://shop.example/p/kettle"
    cases = [
        _response(200, CAPTCHA_PAGE, url),
        _response(404, CAPTCHA_PAGE, url),
        _response(403, "", url, **{"cf-mitigated": "challenge"}),
        # Redirected away from the product, but to a captcha: not a removed product.
        _response(200, NO_PRICE_PAGE, "https://shop.example/errors/validateCaptcha"),
    ]
    for response in cases:
        fields = _read_page(response, url)
        assert fields["outcome"] is Outcome.ERROR
        assert fields["error"] == "blocked"
        assert "price" not in fields and "availability" not in fields
    # A redirect home without any wall is still a removal.
    home = _read_page(_response(200, NO_PRICE_PAGE, "https://shop.example/"), url)
    assert (home["outcome"], home["error"]) == (Outcome.GONE, "redirected_away")
    # A working page with a review captcha keeps its price.
    page = _read_page(_response(200, PRODUCT_WITH_REVIEW_CAPTCHA, url), url)
    assert (page["outcome"], page["price"]) == (Outcome.OK, Decimal("49.90"))


def test_only_challenge_refusals_are_final_for_retries() -> None:
    url = "https://shop.example/p/kettle"
    assert is_challenge(_response(429, HCAPTCHA_PAGE, url))
    assert is_challenge(_response(503, CHALLENGE_PAGE, url))
    assert not is_challenge(_response(503, "Service Unavailable", url))
    assert not is_challenge(_response(200, CAPTCHA_PAGE, url))  # a 200 is never retried anyway


def test_blocked_by_is_an_additive_optional_field_of_the_observation() -> None:
    at = datetime(2026, 12, 5, tzinfo=UTC)
    base = {
        "observation_id": "o1",
        "product_id": "a" * 32,
        "url": "https://shop.example/p/kettle",
        "observed_at": at.isoformat(),
        "outcome": "error",
        "error": "blocked",
    }
    older = PriceObservation.model_validate(base)  # written before the field existed
    assert older.blocked_by is None
    newer = PriceObservation.model_validate({**base, "blocked_by": "captcha"})
    assert newer.blocked_by == "captcha"
    assert PriceObservation.model_validate_json(newer.model_dump_json()) == newer


@settings(max_examples=200, deadline=None)
@given(
    status=st.integers(100, 599),
    body=st.text(max_size=2000),
    header=st.text(max_size=30),
    price_found=st.none() | st.booleans(),
    redirected_to=st.none() | st.text(max_size=80),
)
def test_the_detector_never_raises(
    status: int, body: str, header: str, price_found: bool | None, redirected_to: str | None
) -> None:
    found = detect_block(
        status,
        {"cf-mitigated": header},
        body,
        price_found=price_found,
        redirected_to=redirected_to,
    )
    assert found is None or found.by in {CLOUDFLARE, CAPTCHA, BOT_CHECK, CONSENT}


def test_extract_says_a_saved_captcha_page_is_blocked(tmp_path: Path) -> None:
    from pricewatch.settings import Settings
    from producers.extract_command import extract_file

    walled = tmp_path / "walled.html"
    walled.write_text(CAPTCHA_PAGE)
    product = tmp_path / "product.html"
    product.write_text(PRODUCT_WITH_REVIEW_CAPTCHA)
    shown = extract_file(Settings(), walled, None)
    assert (shown["price"], shown["error"], shown["blocked_by"]) == (None, "blocked", "captcha")
    assert shown["blocked_rule"] == "captcha form"
    read = extract_file(Settings(), product, None)
    assert read["price"] == "49.90" and "blocked_by" not in read
