"""Every request a rendering browser makes goes through the scraper's own guarded client.

The browser never reaches the network itself: each request it makes is intercepted
(``page.route``) and either refused or fetched here, through the same URL guard as a
static fetch (``pricewatch.urlguard``: the address check runs in the resolver, on the very
addresses connected to, and literal IPs are checked before), with redirects followed by
hand so every hop is checked, and the body read under the size cap. So a page cannot use
the browser to reach loopback, a private network or a cloud metadata service, whatever its
scripts do. Images, fonts, style sheets and media are refused unasked: a price is in the
document or in what its scripts fetch, never in those, and they are most of a page's bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from pricewatch.urlguard import GuardedResolver, UrlRefused, check_host
from producers.fetch.redirects import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    ResponseTooLarge,
    TooManyRedirects,
    charset_of,
    header_dict,
    read_capped,
)
from producers.render import metrics

log = logging.getLogger(__name__)

# Resource types a price never lives in (Playwright's names).
SKIPPED_RESOURCE_TYPES = frozenset(
    {"image", "media", "font", "stylesheet", "texttrack", "manifest"}
)
# Requests one render may make besides its document: a page's scripts may loop.
MAX_SUBREQUESTS = 150
# Request headers the browser's network stack sets per connection, or ours sets itself.
_DROPPED_REQUEST_HEADERS = frozenset(
    {"host", "connection", "content-length", "accept-encoding", "keep-alive", "upgrade"}
)
# Response headers that describe the bytes on the wire, not the decompressed body we pass.
_DROPPED_RESPONSE_HEADERS = frozenset(
    {"content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"}
)


@dataclass(frozen=True)
class Fetched:
    """What one guarded request answered, after its redirects."""

    status: int
    url: URL
    body: bytes
    charset: str | None
    headers: Mapping[str, str]
    # Response headers as the browser should see them (Set-Cookie values joined by "\n").
    browser_headers: dict[str, str] = field(default_factory=dict)


def make_session(
    allowed: frozenset[str], timeout_seconds: float, user_agent: str
) -> aiohttp.ClientSession:
    """A client session whose resolver refuses forbidden addresses; no cookie jar (the
    browser keeps its cookies and sends them), no proxy from the environment."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=32, resolver=GuardedResolver(allowed), ttl_dns_cache=60
        ),
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        # What the document request sends (the browser's own requests bring theirs).
        headers={
            "User-Agent": user_agent,
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
            "Accept-Language": "en;q=0.9, *;q=0.5",
        },
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        auto_decompress=True,
    )


async def guarded_request(
    session: aiohttp.ClientSession,
    url: str,
    *,
    allowed: frozenset[str],
    max_bytes: int,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> Fetched:
    """One request as a browser would make it, each redirect hop through the URL guard.

    Raises ``UrlRefused`` for a forbidden hop, ``TooManyRedirects``, ``ResponseTooLarge``
    and aiohttp's errors."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        check_host(current, allowed)
        async with session.request(
            method,
            current,
            headers=dict(headers or {}),
            data=body,
            allow_redirects=False,
        ) as response:
            location = response.headers.get("Location")
            if response.status in REDIRECT_STATUSES and location:
                current = str(response.url.join(URL(location)))
                if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                    method, body = "GET", None  # as browsers do
                continue
            content = await read_capped(response, max_bytes)
            return Fetched(
                status=response.status,
                url=response.url,
                body=content,
                charset=charset_of(response),
                headers=header_dict(response.headers),
                browser_headers=_browser_headers(response.headers),
            )
    raise TooManyRedirects(url)


def _browser_headers(headers: Mapping[str, str]) -> dict[str, str]:
    kept: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in _DROPPED_RESPONSE_HEADERS:
            continue
        kept[key] = f"{kept[key]}\n{value}" if key in kept else value
    return kept


def request_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The browser's request headers worth forwarding (cookies, content type, referer...)."""
    return {
        k: v
        for k, v in headers.items()
        if k.lower() not in _DROPPED_REQUEST_HEADERS and not k.startswith(":")
    }


class RequestBudget:
    """How many more requests one render may make."""

    def __init__(self, limit: int = MAX_SUBREQUESTS) -> None:
        self.left = limit

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


def refuse(reason: str, url: str, detail: object = "") -> None:
    metrics.RENDER_REQUESTS_BLOCKED.labels(reason).inc()
    log.debug("render: %s refused (%s) %s", url, reason, detail)


__all__ = [
    "SKIPPED_RESOURCE_TYPES",
    "Fetched",
    "RequestBudget",
    "ResponseTooLarge",
    "UrlRefused",
    "guarded_request",
    "make_session",
    "refuse",
    "request_headers",
]
