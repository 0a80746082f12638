"""Fetching one product page and turning it into a ``PriceObservation``: the fetcher that
composes the concerns of its sibling modules (``redirects``: one guarded GET and its size
cap; ``retries``; ``conditional``: conditional GETs) with robots.txt and per-host limits.

Every fetch becomes an observation, whatever happened: a broken page is data (``error``),
a removed product is data (``gone``). Nothing here raises for a bad page.

Site adapters (``Settings.site_adapters_file``) pick the extraction rules per host. A JSON-API
adapter makes the fetcher request the product's API URL instead of its page; the observation
then carries the API response's ``http_status`` and ``final_url``.

Politeness (``producers.politeness``, ``producers.robots``), per URL host and process:

- robots.txt is read first (once per origin and ``robots_cache_seconds``); a disallowed URL
  is not requested and becomes an error observation ``robots_disallowed``;
- at most ``host_max_concurrent_requests`` requests in flight and
  ``host_min_request_interval_seconds`` between their starts (a site adapter may override
  both; a robots.txt ``Crawl-delay`` can only make the gap longer);
- transient failures (timeout, connection error, 5xx, 429) are retried up to
  ``fetch_max_attempts`` with exponential backoff and full jitter; a 429/503 with
  ``Retry-After`` waits that long instead (for every request to the host), unless it is
  longer than ``retry_after_max_seconds``: then the fetch ends as ``rate_limited``;
- a page that answered 200 with an ``ETag``/``Last-Modified`` is requested conditionally
  next time; a 304 publishes the remembered extraction again (http_status 304).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from pricewatch.contract.records import Outcome, PriceObservation
from pricewatch.ids import observation_id_for
from pricewatch.settings import Settings
from pricewatch.urlguard import GuardedResolver, UrlRefused, check_host
from producers import metrics
from producers.extractors.chain import (
    NO_PRICE_FOUND,
    HtmlAdapter,
    JsonApiAdapter,
    adapter_for,
    extract,
    extract_with_adapter,
    load_site_adapters,
)
from producers.extractors.sites import adapter_for_host
from producers.fetch.blocked import BLOCKED_ERROR, Blocked, detect_block
from producers.fetch.conditional import ConditionalCache, Remembered
from producers.fetch.redirects import (
    Response,
    ResponseTooLarge,
    TooManyRedirects,
    get_following_redirects,
    redirected_away,
)
from producers.fetch.retries import Attempts, RateLimited, RetryPolicy, get_with_retries
from producers.politeness import HostLimiter, HostPolicy
from producers.robots import MAX_ROBOTS_BYTES, RobotsAnswer, RobotsCache, Verdict

log = logging.getLogger(__name__)

GONE_STATUSES = frozenset({404, 410})
ROBOTS_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class FetchResult:
    """An observation plus what the fetch cost, for the scraper's metrics."""

    observation: PriceObservation
    response_bytes: int
    elapsed_seconds: float  # in HTTP requests (politeness waits excluded)
    website: str = ""
    attempts: int = 0
    not_modified: bool = False


class PageRenderer(Protocol):
    """Renders a page in a browser (``producers.render.Renderer``): the page as its scripts
    leave it, as a ``Response``. Raises an exception with a ``reason`` attribute when the
    browser fails, and what a static fetch raises for the document itself."""

    async def render(self, url: str) -> Response: ...

    async def close(self) -> None: ...


class RobotsRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RenderRefused(Exception):
    """The browser could not render the page; ``reason`` is the observation's error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def website_of(url: str) -> str:
    """The politeness and metrics key of a URL: its host name, lower-case, no port."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


class PageFetcher:
    """Fetches product pages through one shared, guarded aiohttp session.

    Construct it inside a running event loop; close it with ``close()`` or ``async with``.
    ``adapters`` maps hosts to site adapters; None reads ``settings.site_adapters_file``.
    ``rng`` makes backoff jitter reproducible in tests.
    """

    def __init__(
        self,
        settings: Settings,
        adapters: Mapping[str, HtmlAdapter | JsonApiAdapter] | None = None,
        rng: random.Random | None = None,
        renderer: PageRenderer | None = None,
        render_all: bool = False,
    ) -> None:
        if adapters is None and settings.site_adapters_file is not None:
            adapters = load_site_adapters(settings.site_adapters_file)
        self._adapters: Mapping[str, HtmlAdapter | JsonApiAdapter] = adapters or {}
        self._timeout_seconds = settings.fetch_timeout_seconds
        self._max_bytes = settings.max_response_bytes
        self._allowed = settings.allowed_private_host_set
        self._retry_after_max = settings.retry_after_max_seconds
        self._retries = RetryPolicy(
            max_attempts=settings.fetch_max_attempts,
            backoff_base=settings.retry_backoff_base_seconds,
            backoff_max=settings.retry_backoff_max_seconds,
            retry_after_max=settings.retry_after_max_seconds,
            timeout_seconds=settings.fetch_timeout_seconds,
            rng=rng or random.Random(),
        )
        # The render tier: for websites whose adapter says so, every page (render_all: the
        # extract command's --render), or a static page without a price (render_fallback).
        self._renderer = renderer
        self._render_all = render_all
        self._render_fallback = settings.render_fallback
        # One attempt: a render is costly, and the next scheduled check comes soon. Its own
        # timeouts (a slot, then the render) are the renderer's; this one is a backstop.
        self._render_policy = replace(
            self._retries,
            max_attempts=1,
            timeout_seconds=2 * settings.render_timeout_seconds + settings.fetch_timeout_seconds,
        )
        self._default_policy = HostPolicy(
            settings.host_max_concurrent_requests, settings.host_min_request_interval_seconds
        )
        self.limiter = HostLimiter(self._policy_for)
        self.remembered = ConditionalCache(settings.conditional_cache_entries)
        self._robots = (
            RobotsCache(self._fetch_robots, settings.user_agent, settings.robots_cache_seconds)
            if settings.respect_robots_txt
            else None
        )
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

    def _policy_for(self, host: str) -> HostPolicy:
        adapter = self._adapters.get(host) or self._adapters.get(host.removeprefix("www."))
        if adapter is None:
            return self._default_policy
        return HostPolicy(
            adapter.max_concurrent_requests or self._default_policy.max_concurrent,
            self._default_policy.min_interval
            if adapter.min_request_interval_seconds is None
            else adapter.min_request_interval_seconds,
        )

    async def close(self) -> None:
        await self._session.close()
        if self._renderer is not None:
            await self._renderer.close()

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
        """``fetch``, plus the bytes read and the time taken; records the fetch's metrics."""
        attempts = Attempts()
        response: Response | None = None
        not_modified = False
        fields: dict[str, object]
        adapter = adapter_for(self._adapters, url)
        target = url
        if isinstance(adapter, JsonApiAdapter):
            api_url = adapter.api_url_for(url)
            if api_url is None:
                adapter = None  # not a product URL this adapter knows: read the page
            else:
                target = api_url
        website = website_of(url)  # metrics: the shop, even when its API answers
        request_host = website_of(target)  # politeness: where the requests go
        render = (
            self._renderer is not None
            and not isinstance(adapter, JsonApiAdapter)
            and (self._render_all or wants_render(adapter, url))
        )
        remembered = None if render else self.remembered.get(target)
        try:
            check_host(target, self._allowed)
            if self._robots is not None:
                await self._obey_robots(target, request_host)
            if render:
                response = await self._rendered(target, request_host, attempts)
            else:
                json_api = isinstance(adapter, JsonApiAdapter)
                conditional = None if remembered is None else remembered.request_headers()
                response = await get_with_retries(
                    partial(self._get, target, json_api=json_api, conditional=conditional),
                    website=request_host,
                    limiter=self.limiter,
                    policy=self._retries,
                    attempts=attempts,
                )
        except RenderRefused as exc:
            fields = _failed(exc.reason)
        except UrlRefused as exc:
            fields = _failed(f"url_refused: {exc}")
        except RobotsRefused as exc:
            fields = _failed(exc.reason)
        except RateLimited:
            fields = _failed("rate_limited")
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
            if response.status == 304 and remembered is not None:
                fields = dict(remembered.fields)
                not_modified = True
                metrics.NOT_MODIFIED.inc()
            else:
                fields = self._read_safely(response, target, adapter, remember=not render)
                if not render and self._fallback_wanted(response, fields, adapter):
                    fallback = await self._render_fallback_page(target, request_host, attempts)
                    if fallback is not None:
                        response = fallback
                        fields = self._read_safely(response, target, adapter, remember=False)
        if response is not None:
            final_url = str(response.final_url)
            if not_modified and remembered is not None:
                final_url = remembered.final_url
            fields |= {"http_status": response.status, "final_url": final_url}
        observed_at = attempts.last_started_at or datetime.now(UTC)
        observation = PriceObservation.model_validate(
            {
                "observation_id": observation_id_for(product_id, observed_at),
                "product_id": product_id,
                "url": url,
                "observed_at": observed_at,
                **fields,
            }
        )
        metrics.record_fetch(
            website,
            observation.outcome,
            observation.error,
            attempts.http_seconds,
            attempts.response_bytes,
            observation.blocked_by,
        )
        return FetchResult(
            observation=observation,
            response_bytes=attempts.response_bytes,
            elapsed_seconds=attempts.http_seconds,
            website=website,
            attempts=attempts.count,
            not_modified=not_modified,
        )

    # --- the render tier ----------------------------------------------------------------
    async def _rendered(self, target: str, request_host: str, attempts: Attempts) -> Response:
        """``target`` rendered in the browser, in the host's turn like a static GET."""
        renderer = self._renderer
        assert renderer is not None

        async def render() -> Response:
            try:
                return await renderer.render(target)
            except (UrlRefused, TooManyRedirects, ResponseTooLarge, aiohttp.ClientError):
                raise
            except TimeoutError as exc:
                raise RenderRefused("render_timeout") from exc
            except Exception as exc:
                raise RenderRefused(getattr(exc, "reason", f"render_failed: {exc!r}")) from exc

        return await get_with_retries(
            render,
            website=request_host,
            limiter=self.limiter,
            policy=self._render_policy,
            attempts=attempts,
        )

    def _fallback_wanted(
        self,
        response: Response,
        fields: Mapping[str, object],
        adapter: HtmlAdapter | JsonApiAdapter | None,
    ) -> bool:
        """A 200 page that showed no price (nor a wall a browser would meet too)."""
        return (
            self._render_fallback
            and self._renderer is not None
            and not isinstance(adapter, JsonApiAdapter)
            and response.status == 200
            and fields.get("outcome") is Outcome.ERROR
            and fields.get("error") == NO_PRICE_FOUND
        )

    async def _render_fallback_page(
        self, target: str, request_host: str, attempts: Attempts
    ) -> Response | None:
        """The rendered page, or None when rendering failed (the static reading stands)."""
        try:
            return await self._rendered(target, request_host, attempts)
        except Exception as exc:
            log.info("render fallback for %s failed: %s", target, exc)
            return None

    def _read_safely(
        self,
        response: Response,
        target: str,
        adapter: HtmlAdapter | JsonApiAdapter | None,
        remember: bool,
    ) -> dict[str, object]:
        try:
            return self._read_and_remember(response, target, adapter, remember)
        except Exception as exc:
            # An extractor's bug on one odd page must not take the scraper down either:
            # the product gets an error observation, the log the traceback.
            log.exception("unexpected failure reading %s", target)
            return _failed(f"extract_failed: {type(exc).__name__}")

    def _read_and_remember(
        self,
        response: Response,
        target: str,
        adapter: HtmlAdapter | JsonApiAdapter | None,
        remember: bool = True,
    ) -> dict[str, object]:
        fields = _read_page(response, target, adapter)
        if "extractor" in fields:  # the extraction chain ran
            metrics.EXTRACTIONS.labels(extractor=fields["extractor"] or "none").inc()
        if not remember:
            return fields  # a rendered page: no validators that a static GET could use
        if fields["outcome"] is Outcome.OK and (response.etag or response.last_modified):
            self.remembered.put(
                target,
                Remembered(
                    etag=response.etag,
                    last_modified=response.last_modified,
                    final_url=str(response.final_url),
                    fields=fields,
                ),
            )
        else:
            self.remembered.forget(target)
        return fields

    async def _obey_robots(self, url: str, website: str) -> None:
        assert self._robots is not None
        verdict = await self._robots.verdict(url)
        if verdict is Verdict.DISALLOWED:
            metrics.ROBOTS_REFUSALS.inc()
            raise RobotsRefused("robots_disallowed")
        if verdict is Verdict.UNAVAILABLE:
            raise RobotsRefused("robots_unavailable")
        delay = await self._robots.crawl_delay(url)
        if delay:
            # Capped like Retry-After: a robots.txt may not stop us for hours per request.
            self.limiter.slow_down(website, min(delay, self._retry_after_max))

    async def _fetch_robots(self, robots_url: str) -> RobotsAnswer:
        """One guarded, rate-limited GET of a robots.txt; never raises for a bad answer."""
        try:
            check_host(robots_url, self._allowed)
            async with self.limiter.slot(website_of(robots_url)):
                async with asyncio.timeout(min(self._timeout_seconds, ROBOTS_TIMEOUT_SECONDS)):
                    response = await self._get(robots_url, truncate_at=MAX_ROBOTS_BYTES)
        except UrlRefused:
            raise
        except (TimeoutError, aiohttp.ClientError, TooManyRedirects, ResponseTooLarge) as exc:
            log.info("robots.txt %s unavailable: %s", robots_url, type(exc).__name__)
            return RobotsAnswer(status=None)
        return RobotsAnswer(status=response.status, body=response.body)

    async def _get(
        self,
        url: str,
        *,
        json_api: bool = False,
        conditional: Mapping[str, Mapping[str, str]] | None = None,
        truncate_at: int | None = None,
    ) -> Response:
        return await get_following_redirects(
            self._session,
            url,
            allowed=self._allowed,
            max_bytes=self._max_bytes,
            truncate_at=truncate_at,
            json_api=json_api,
            conditional=conditional,
        )


def wants_render(adapter: HtmlAdapter | JsonApiAdapter | None, url: str) -> bool:
    """Whether ``url``'s website is read rendered: its user adapter says ``render``, or,
    without one, the adapter shipped for that shop does."""
    if isinstance(adapter, HtmlAdapter):
        return adapter.render
    if adapter is not None:
        return False
    shipped = adapter_for_host(website_of(url))
    return shipped is not None and shipped.render


def _failed(error: str) -> dict[str, object]:
    return {"outcome": Outcome.ERROR, "error": error}


def _read_page(
    response: Response, url: str, adapter: HtmlAdapter | JsonApiAdapter | None = None
) -> dict[str, object]:
    """The observation fields a received response gives (``url``: the URL requested).

    A bot check, captcha or consent wall (``producers.fetch.blocked``) is an error
    ``blocked``, never a removal or a missing price: it says nothing about the product."""
    status = response.status
    text = response.body.decode(response.charset or "utf-8", errors="replace")
    away = redirected_away(URL(url), response.final_url)
    if status != 200 or away:
        blocked = detect_block(
            status,
            response.headers,
            text,
            redirected_to=str(response.final_url) if away else None,
        )
        if blocked is not None:
            return _blocked(blocked)
    if status in GONE_STATUSES:
        return {"outcome": Outcome.GONE, "error": f"http_{status}"}
    if status != 200:
        return _failed(f"http_{status}")
    if away:
        return {"outcome": Outcome.GONE, "error": "redirected_away"}
    if isinstance(adapter, JsonApiAdapter):
        extraction = extract_with_adapter(adapter, text, str(response.final_url))
    else:
        extraction = extract(text, str(response.final_url), adapter=adapter)
    blocked = detect_block(status, response.headers, text, price_found=extraction.price is not None)
    if blocked is not None:
        return _blocked(blocked)
    return {
        "outcome": Outcome.OK if extraction.price is not None else Outcome.ERROR,
        "price": extraction.price,
        "currency": extraction.currency,
        "availability": extraction.availability,
        "title": extraction.title,
        "extractor": extraction.extractor,
        "error": extraction.error,
    }


def _blocked(blocked: Blocked) -> dict[str, object]:
    return {"outcome": Outcome.ERROR, "error": BLOCKED_ERROR, "blocked_by": blocked.by}
