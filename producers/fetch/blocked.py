"""Blocked is not sold out: telling a bot check, a captcha or a consent wall from a page.

A shop that suspects a robot answers with an interstitial instead of the product: a
captcha, a JavaScript challenge, a "verify you are human" page, or a cookie-consent wall
that hides the page until someone clicks. Read as a product page, such an answer looks like
a product that vanished (a 403, a redirect to another page) or one with no price, and the
first would become a "removed" alert. This module recognises them, so the fetch becomes an
error observation ``blocked`` (with ``blocked_by`` saying what blocked us), which never
changes a product's state.

The rules are few and explainable (``Blocked.rule`` names the one that matched), and they
look for generic markers that a challenge or wall must carry to work (the challenge
provider's script path or widget class, a captcha form, a consent host), never for the
wording of one site's page:

1. a ``cf-mitigated: challenge`` response header: Cloudflare says it served a challenge,
   whatever the status;
2. a refusal status (401, 403, 429, 503, or any other 4xx/5xx) whose body carries a
   challenge or captcha marker;
3. a 200 page *without a price* that carries one: a product page with a price is never
   blocked (a review form's reCAPTCHA must not hide a price), which keeps false alarms
   away from pages that do work;
4. a redirect that ends on a consent host (``consent.``) or on a captcha path, or a page
   without a price whose main element is a consent form: a consent wall.

A plain 403 or 429 without such a body stays ``http_403`` / ``http_429``: it may be a real
refusal of that URL, and it keeps its own retry and metrics rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

BLOCKED_ERROR = "blocked"

# What blocked us (``PriceObservation.blocked_by`` and the metric's ``reason``).
CLOUDFLARE = "cloudflare"
CAPTCHA = "captcha"
BOT_CHECK = "bot_check"
CONSENT = "consent"

# Only the start of a body is read: interstitials are small, and their markers sit in the
# head or the first form. A 5 MB product page is not scanned to its end for a word.
SCAN_CHARS = 200_000


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why a response is a block, not a page: ``by`` (one of the names above) and the
    rule that matched, for logs and ``pricewatch extract``."""

    by: str
    rule: str


@dataclass(frozen=True, slots=True)
class _Marker:
    by: str
    name: str
    pattern: re.Pattern[str]


def _marker(by: str, name: str, pattern: str) -> _Marker:
    return _Marker(by, name, re.compile(pattern, re.IGNORECASE))


# Markers a challenge page carries because the challenge needs them to run: the provider's
# script or form endpoint, its widget's class, the captcha form itself.
CHALLENGE_MARKERS: tuple[_Marker, ...] = (
    _marker(CLOUDFLARE, "cloudflare challenge script", r"/cdn-cgi/challenge-platform/"),
    _marker(CLOUDFLARE, "cloudflare challenge options", r"\b_cf_chl_opt\b|\bcf-chl-"),
    _marker(CAPTCHA, "captcha form", r"<form\b[^>]*\baction=[\"'][^\"']*captcha"),
    _marker(CAPTCHA, "captcha image", r"<img\b[^>]*\bsrc=[\"'][^\"']*captcha"),
    _marker(
        CAPTCHA,
        "captcha widget",
        r"\bclass=[\"'][^\"']*\b(?:g-recaptcha|h-captcha|cf-turnstile)\b",
    ),
    _marker(
        CAPTCHA,
        "captcha script",
        r"recaptcha/api\.js|hcaptcha\.com/1/api\.js|turnstile/v0/api\.js",
    ),
    _marker(BOT_CHECK, "bot-protection captcha", r"\bcaptcha-delivery\.com\b|\bpx-captcha\b"),
    _marker(BOT_CHECK, "bot-protection challenge", r"\b_pxAppId\b|\bdatadome\b.{0,200}\bcaptcha\b"),
)

# A wall is a consent form that *is* the page: a form or dialog whose id/class says so.
CONSENT_FORM = _marker(
    CONSENT,
    "consent form",
    r"<(?:form|div|section|dialog)\b[^>]*\b(?:id|class)=[\"'][^\"']*"
    r"\b(?:consent[-_]?wall|cookie[-_]?wall|consent[-_]?form)\b",
)

_CAPTCHA_PATH = re.compile(r"captcha|/challenge\b", re.IGNORECASE)


def detect_block(
    status: int,
    headers: Mapping[str, str],
    body: str,
    *,
    redirected_to: str | None = None,
    price_found: bool | None = None,
) -> Blocked | None:
    """What blocked the fetch, or None when the response is the page (or a plain error).

    ``redirected_to``: the final URL when redirects led away from the requested one (a
    product URL may well contain "captcha"; a redirect to such a path is another matter).
    ``price_found``: whether the extraction read a price from this (200) body; None when
    it was not run yet. A 200 page with a price is never blocked, except by a
    ``cf-mitigated: challenge`` header.
    """
    if _header(headers, "cf-mitigated").lower() == "challenge":
        return Blocked(CLOUDFLARE, "cf-mitigated: challenge header")
    if redirected_to is not None:
        moved = _blocked_destination(redirected_to)
        if moved is not None:
            return moved
    if status == 200 and price_found:
        return None
    if status < 400 and status != 200:
        return None  # a 304 or an unfollowed redirect: no page to judge
    head = body[:SCAN_CHARS]
    for marker in CHALLENGE_MARKERS:
        if marker.pattern.search(head):
            return Blocked(marker.by, marker.name)
    if CONSENT_FORM.pattern.search(head):
        return Blocked(CONSENT, CONSENT_FORM.name)
    return None


def _blocked_destination(final_url: str) -> Blocked | None:
    """A redirect that ended on a consent host or a captcha path is a wall, not a move."""
    try:
        parts = urlsplit(final_url)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if host.startswith("consent."):
        return Blocked(CONSENT, "redirected to a consent host")
    if _CAPTCHA_PATH.search(parts.path):
        return Blocked(CAPTCHA, "redirected to a captcha path")
    return None


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:  # a plain dict from a test or a browser: names in any case
        value = next((v for k, v in headers.items() if k.lower() == name), "")
    return value.strip()
