"""Fetching one product page and turning it into a ``PriceObservation``.

Every fetch becomes an observation, whatever happened: a broken page is data (``error``),
a removed product is data (``gone``). Nothing here raises for a bad page.

Redirects are followed by hand, not by aiohttp, so every hop passes the URL guard: a
redirect to ``http://169.254.169.254/`` is refused like a subscription to it would be.

Site adapters (``Settings.site_adapters_file``) pick the extraction rules per host. A JSON-API
adapter makes the fetcher request the product's API URL instead of its page; the observation
then carries the API response's ``http_status`` and ``final_url``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

import aiohttp
from yarl import URL

from pricewatch.contract.records import Outcome, PriceObservation
from pricewatch.ids import observation_id_for
from pricewatch.settings import Settings
from producers.extract import (
    HtmlAdapter,
    JsonApiAdapter,
    adapter_for,
    extract,
    extract_with_adapter,
    load_site_adapters,
)
from producers.urlguard import GuardedResolver, UrlRefused, check_host

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
GONE_STATUSES = frozenset({404, 410})
READ_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class FetchResult:
    """An observation plus what the fetch cost, for the scraper's metrics."""

    observation: PriceObservation
    response_bytes: int
    elapsed_seconds: float


class ResponseTooLarge(Exception):
    pass


class TooManyRedirects(Exception):
    pass


@dataclass(frozen=True)
class _Response:
    status: int
    final_url: URL
    body: bytes
    charset: str | None


class PageFetcher:
    """Fetches product pages through one shared, guarded aiohttp session.

    Construct it inside a running event loop; close it with ``close()`` or ``async with``.
    ``adapters`` maps hosts to site adapters; None reads ``settings.site_adapters_file``.
    """

    def __init__(
        self,
        settings: Settings,
        adapters: Mapping[str, HtmlAdapter | JsonApiAdapter] | None = None,
    ) -> None:
        if adapters is None and settings.site_adapters_file is not None:
            adapters = load_site_adapters(settings.site_adapters_file)
        self._adapters: Mapping[str, HtmlAdapter | JsonApiAdapter] = adapters or {}
        self._timeout_seconds = settings.fetch_timeout_seconds
        self._max_bytes = settings.max_response_bytes
        self._allowed = settings.allowed_private_host_set
        connector = aiohttp.TCPConnector(
            limit=settings.scraper_concurrency,
            resolver=GuardedResolver(self._allowed),
            ttl_dns_cache=60,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=settings.fetch_timeout_seconds),
            headers={
                "User-Agent": settings.user_agent,
                "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
                "Accept-Language": "en;q=0.9, *;q=0.5",
            },
            # Never pick up HTTP(S)_PROXY: a proxy would resolve hosts past our guard.
            trust_env=False,
            auto_decompress=True,
        )

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> PageFetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def fetch(self, product_id: str, url: str) -> PriceObservation:
        """Fetch ``url`` and say what it shows about the product. Never raises for a bad page."""
        return (await self.fetch_page(product_id, url)).observation

    async def fetch_page(self, product_id: str, url: str) -> FetchResult:
        """``fetch``, plus the bytes read and the time taken (for metrics)."""
        observed_at = datetime.now(UTC)
        started = time.perf_counter()
        response: _Response | None = None
        fields: dict[str, object]
        adapter = adapter_for(self._adapters, url)
        target = url
        if isinstance(adapter, JsonApiAdapter):
            api_url = adapter.api_url_for(url)
            if api_url is None:
                adapter = None  # not a product URL this adapter knows: read the page
            else:
                target = api_url
        try:
            async with asyncio.timeout(self._timeout_seconds):
                response = await self._get(target, json_api=isinstance(adapter, JsonApiAdapter))
        except UrlRefused as exc:
            fields = _failed(f"url_refused: {exc}")
        except TimeoutError:
            # Before ClientError: aiohttp's timeout errors are both.
            fields = _failed("timeout")
        except ResponseTooLarge:
            fields = _failed("response_too_large")
        except TooManyRedirects:
            fields = _failed("too_many_redirects")
        except aiohttp.InvalidURL as exc:
            fields = _failed(f"url_refused: invalid URL {exc}")
        except aiohttp.ClientError as exc:
            fields = _failed(f"connection_failed: {type(exc).__name__}")
        except Exception as exc:
            # One odd page must never take the scraper down; the log keeps the traceback.
            log.exception("unexpected failure fetching %s", url)
            fields = _failed(f"fetch_failed: {type(exc).__name__}")
        else:
            fields = _read_page(response, target, adapter)
        if response is not None:
            fields |= {"http_status": response.status, "final_url": str(response.final_url)}
        observation = PriceObservation.model_validate(
            {
                "observation_id": observation_id_for(product_id, observed_at),
                "product_id": product_id,
                "url": url,
                "observed_at": observed_at,
                **fields,
            }
        )
        return FetchResult(
            observation=observation,
            response_bytes=len(response.body) if response else 0,
            elapsed_seconds=time.perf_counter() - started,
        )

    async def _get(self, url: str, json_api: bool = False) -> _Response:
        current = url
        headers = {"Accept": "application/json"} if json_api else None
        for _ in range(MAX_REDIRECTS + 1):
            check_host(current, self._allowed)
            async with self._session.get(
                current, allow_redirects=False, headers=headers
            ) as response:
                location = response.headers.get("Location")
                if response.status in REDIRECT_STATUSES and location:
                    current = str(response.url.join(URL(location)))
                    continue
                body = await self._read_capped(response)
                return _Response(
                    status=response.status,
                    final_url=response.url,
                    body=body,
                    charset=_charset(response),
                )
        raise TooManyRedirects(url)

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        declared = response.content_length
        if declared is not None and declared > self._max_bytes:
            raise ResponseTooLarge(declared)
        chunks: list[bytes] = []
        size = 0
        # Counted after decompression, so a small gzip bomb is caught as well.
        async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
            size += len(chunk)
            if size > self._max_bytes:
                raise ResponseTooLarge(size)
            chunks.append(chunk)
        return b"".join(chunks)


def _failed(error: str) -> dict[str, object]:
    return {"outcome": Outcome.ERROR, "error": error}


def _read_page(
    response: _Response, url: str, adapter: HtmlAdapter | JsonApiAdapter | None = None
) -> dict[str, object]:
    """The observation fields a received response gives (``url``: the URL requested)."""
    status = response.status
    if status in GONE_STATUSES:
        return {"outcome": Outcome.GONE, "error": f"http_{status}"}
    if status != 200:
        return _failed(f"http_{status}")
    if _redirected_away(URL(url), response.final_url):
        return {"outcome": Outcome.GONE, "error": "redirected_away"}
    text = response.body.decode(response.charset or "utf-8", errors="replace")
    if isinstance(adapter, JsonApiAdapter):
        extraction = extract_with_adapter(adapter, text, str(response.final_url))
    else:
        extraction = extract(text, str(response.final_url), adapter=adapter)
    return {
        "outcome": Outcome.OK if extraction.price is not None else Outcome.ERROR,
        "price": extraction.price,
        "currency": extraction.currency,
        "availability": extraction.availability,
        "title": extraction.title,
        "extractor": extraction.extractor,
        "error": extraction.error,
    }


def _charset(response: aiohttp.ClientResponse) -> str | None:
    charset = response.charset
    if charset is None:
        return None
    try:
        "".encode(charset)
    except LookupError:
        return None  # a bogus charset label: fall back to UTF-8
    return charset


def _redirected_away(requested: URL, final: URL) -> bool:
    """True when a redirect left the product page, typically for the home or a category page.

    Only the path counts: http -> https, another host name or a changed query are the same
    product. A trailing slash is not a different page.
    """
    if requested.path == final.path:
        return False
    if final.path in ("", "/"):
        return True
    return requested.path.rstrip("/") != final.path.rstrip("/")
