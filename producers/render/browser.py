"""The browser that renders pages whose price only appears after their scripts run.

One Chromium per scraper process, started on the first render (a scraper that never renders
never starts one): the system's Chromium launched by Playwright (``render_chromium_path``;
Playwright's own browser download is not used), or a long-running one reached over the
DevTools protocol (``render_cdp_url``, e.g. docker-compose's ``chromium`` service). At most
``render_concurrency`` at once, each within ``render_timeout_seconds``. A render runs in a
tab (a browser context and its page) kept for the next renders, because opening a page
costs about as much as rendering one; between renders the tab is wiped (a blank page, no
cookies, the storage of every origin it touched cleared), so nothing of one page reaches
the next, and it is replaced after ``RENDERS_PER_TAB`` renders or any failure.

A render is: fetch the document through the guard (``routing``), and unless it is a 200
HTML page (a 404, a redirect loop: read as it came), open it in the browser, serve it the
document we fetched and every further request through the guard, wait for ``load`` and
then up to ``render_settle_seconds`` for the network to go quiet (prices often arrive by
a script's request after ``load``), and take the page's HTML as it is now.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from yarl import URL

from pricewatch.settings import Settings
from pricewatch.urlguard import UrlRefused
from producers.fetch.redirects import Response, ResponseTooLarge, TooManyRedirects
from producers.render import metrics
from producers.render.routing import (
    SKIPPED_RESOURCE_TYPES,
    Fetched,
    RequestBudget,
    guarded_request,
    make_session,
    refuse,
    request_headers,
)

if TYPE_CHECKING:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        CDPSession,
        Page,
        Playwright,
        Route,
        WebSocketRoute,
    )

log = logging.getLogger(__name__)

# Belt and braces for a browser we launch: should any request ever escape interception,
# it goes to a proxy that is not there (loopback included), and WebRTC may not go around it.
LAUNCH_ARGS = (
    "--proxy-server=http://127.0.0.1:1",
    "--proxy-bypass-list=<-loopback>",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--disable-dev-shm-usage",
)


class RenderFailed(Exception):
    """The browser could not render the page (timeout, crash, unreachable browser)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# A tab (context and page) serves this many renders, then a fresh one replaces it: opening
# a page costs about as much CPU as rendering one, and a bound keeps leaks bounded.
RENDERS_PER_TAB = 50
WIPE_SECONDS = 5.0


@dataclass
class _Job:
    """The render a tab is doing: its document (already fetched) and request budget."""

    document: Fetched
    budget: RequestBudget
    served: bool = False


@dataclass
class _Tab:
    context: BrowserContext
    page: Page
    cdp: CDPSession
    job: _Job | None = None
    origins: set[str] = field(default_factory=set)  # whose storage to wipe afterwards
    renders: int = 0


async def _wipe(tab: _Tab) -> bool:
    """Leave nothing of the last page for the next: a blank page, no cookies, and no
    storage of any origin it touched. False when the tab is not fit to be reused."""
    try:
        async with asyncio.timeout(WIPE_SECONDS):
            for other in tab.context.pages:
                if other is not tab.page:  # popups the page opened
                    await other.close()
            await tab.page.goto("about:blank")
            await tab.context.clear_cookies()
            for origin in tab.origins:
                await tab.cdp.send(
                    "Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"}
                )
    except Exception:  # a timeout included: a tab that will not come clean is dropped
        return False
    tab.origins.clear()
    return True


def _in_main_frame(tab: _Tab, route: Route) -> bool:
    try:
        return route.request.frame == tab.page.main_frame
    except Exception:  # a request without a frame (a worker's)
        return False


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Renderer:
    """Renders pages in Chromium, every request through the URL guard. Create it anywhere;
    the browser starts on the first ``render`` (inside the running loop); ``close()`` it."""

    def __init__(self, settings: Settings) -> None:
        self._allowed = settings.allowed_private_host_set
        self._max_bytes = settings.max_response_bytes
        self._timeout = settings.render_timeout_seconds
        self._settle_ms = settings.render_settle_seconds * 1000
        self._cdp_url = settings.render_cdp_url
        self._chromium = settings.render_chromium_path
        self._user_agent = settings.user_agent
        self._concurrency = settings.render_concurrency
        self._slots: asyncio.Semaphore | None = None
        self._starting: asyncio.Lock | None = None
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._session: aiohttp.ClientSession | None = None
        self._idle_tabs: list[_Tab] = []

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start (or reconnect) the browser; harmless when it runs."""
        if self._starting is None:
            self._starting = asyncio.Lock()
            self._slots = asyncio.Semaphore(self._concurrency)
        async with self._starting:
            if self._browser is not None and self._browser.is_connected():
                return
            self._idle_tabs.clear()  # they belonged to a browser that went away
            from playwright.async_api import async_playwright

            if self._session is None:
                self._session = make_session(self._allowed, self._timeout, self._user_agent)
            if self._playwright is None:
                self._playwright = await async_playwright().start()
            chromium = self._playwright.chromium
            if self._cdp_url:
                endpoint = await cdp_endpoint(self._cdp_url)
                self._browser = await chromium.connect_over_cdp(
                    endpoint, timeout=self._timeout * 1000
                )
                log.info("render: connected to the browser at %s", self._cdp_url)
            else:
                self._browser = await chromium.launch(
                    executable_path=str(self._chromium),
                    args=list(LAUNCH_ARGS),
                    timeout=self._timeout * 1000,
                )
                log.info("render: launched %s (%s)", self._chromium, self._browser.version)

    async def close(self) -> None:
        for tab in self._idle_tabs:
            with suppress(Exception):
                await tab.context.close()
        self._idle_tabs.clear()
        if self._browser is not None:
            with suppress(Exception):  # a browser that already went away
                await self._browser.close()
            self._browser = None
        if self._playwright is not None:
            with suppress(Exception):
                await self._playwright.stop()
            self._playwright = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Renderer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- one render --------------------------------------------------------------------
    async def render(self, url: str) -> Response:
        """The page at ``url`` as its scripts leave it, as a ``Response`` the fetcher reads
        like any other. Raises ``RenderFailed``, and for the document request what a static
        fetch raises (``UrlRefused``, ``TooManyRedirects``, ``ResponseTooLarge``, aiohttp's
        errors)."""
        try:
            await self.start()
        except Exception as exc:
            metrics.RENDERS.labels("failed").inc()
            raise RenderFailed(f"render_failed: browser unavailable: {_first_line(exc)}") from exc
        assert self._slots is not None
        try:
            async with asyncio.timeout(self._timeout):  # a queue longer than this: give up
                await self._slots.acquire()
        except TimeoutError:
            metrics.RENDERS.labels("timeout").inc()
            raise RenderFailed("render_timeout: no browser slot") from None
        metrics.RENDERS_IN_FLIGHT.inc()
        started = time.perf_counter()
        outcome = "failed"
        try:
            async with asyncio.timeout(self._timeout):
                response, outcome = await self._render(url)
            return response
        except TimeoutError:
            outcome = "timeout"
            raise RenderFailed("render_timeout") from None
        except (UrlRefused, TooManyRedirects, ResponseTooLarge, aiohttp.ClientError):
            raise  # the document itself: the fetcher says why, as for a static fetch
        except Exception as exc:
            # Playwright's errors (a crashed page, a lost browser) and anything odd: one
            # page must not take the scraper down.
            log.warning("render %s failed: %s", url, _first_line(exc))
            raise RenderFailed(f"render_failed: {type(exc).__name__}") from exc
        finally:
            self._slots.release()
            metrics.RENDERS_IN_FLIGHT.dec()
            metrics.RENDERS.labels(outcome).inc()
            metrics.RENDER_SECONDS.observe(time.perf_counter() - started)

    async def _render(self, url: str) -> tuple[Response, str]:
        assert self._browser is not None and self._session is not None
        document = await guarded_request(
            self._session, url, allowed=self._allowed, max_bytes=self._max_bytes
        )
        if document.status != 200 or not _is_html(document):
            return (
                _response(document, document.body, document.url, document.charset),
                "not_rendered",
            )
        tab = self._idle_tabs.pop() if self._idle_tabs else await self._open_tab()
        reusable = False
        try:
            tab.job = _Job(document, RequestBudget())
            tab.origins.add(_origin(str(document.url)))
            await tab.page.goto(str(document.url), wait_until="load")
            if self._settle_ms > 0:  # (a timeout of 0 would mean no timeout at all)
                with suppress(Exception):  # still busy after the settle time: take it as is
                    await tab.page.wait_for_load_state("networkidle", timeout=self._settle_ms)
            html = await tab.page.content()
            final_url = URL(tab.page.url)
            reusable = True
        finally:
            tab.job = None
            tab.renders += 1
            if reusable and tab.renders < RENDERS_PER_TAB:
                reusable = await _wipe(tab)
            if reusable:
                self._idle_tabs.append(tab)
            else:
                with suppress(Exception):
                    await tab.context.close()
        return _response(document, html.encode(), final_url, "utf-8"), "ok"

    async def _open_tab(self) -> _Tab:
        """A browser context with one page, every request of which is routed here."""
        assert self._browser is not None
        context = await self._browser.new_context(
            user_agent=self._user_agent, service_workers="block", locale="en-US"
        )
        try:
            page = await context.new_page()
            tab = _Tab(context, page, await context.new_cdp_session(page))

            async def handle(route: Route) -> None:
                await self._route(tab, route)

            # On the context, not the page: a popup the page opens is routed too.
            await context.route("**/*", handle)
            await context.route_web_socket("**/*", _refuse_websocket)
        except BaseException:
            with suppress(Exception):
                await context.close()
            raise
        return tab

    async def _route(self, tab: _Tab, route: Route) -> None:
        job = tab.job
        if job is None:  # a straggler of the previous page
            await _abort(route)
            return
        request = route.request
        if not job.served and request.is_navigation_request() and _in_main_frame(tab, route):
            job.served = True  # the document, as we fetched it already
            await _fulfill(route, job.document)
            return
        tab.origins.add(_origin(request.url))
        await self._forward(route, job.budget)

    async def _forward(self, route: Route, budget: RequestBudget) -> None:
        """Fetch one of the page's requests through the guard, or refuse it."""
        assert self._session is not None
        request = route.request
        if request.resource_type in SKIPPED_RESOURCE_TYPES:
            refuse("resource_type", request.url)
            await _abort(route)
            return
        if not budget.take():
            refuse("limit", request.url)
            await _abort(route)
            return
        try:
            fetched = await guarded_request(
                self._session,
                request.url,
                allowed=self._allowed,
                max_bytes=self._max_bytes,
                method=request.method,
                headers=request_headers(await request.all_headers()),
                body=request.post_data_buffer,
            )
        except UrlRefused as exc:
            refuse("url_guard", request.url, exc)
            await _abort(route)
            return
        except Exception as exc:  # unreachable, too large, too many redirects, timeout
            log.debug("render: %s failed: %s", request.url, _first_line(exc))
            await _abort(route, "failed")
            return
        await _fulfill(route, fetched)


async def _fulfill(route: Route, fetched: Fetched) -> None:
    with suppress(Exception):  # the page may be gone (timeout, closed context)
        await route.fulfill(
            status=fetched.status, headers=fetched.browser_headers, body=fetched.body
        )


async def _abort(route: Route, error: str = "blockedbyclient") -> None:
    with suppress(Exception):
        await route.abort(error)


async def _refuse_websocket(websocket: WebSocketRoute) -> None:
    # Never connected to the server: a socket would bypass the guard.
    refuse("websocket", websocket.url)
    with suppress(Exception):
        await websocket.close()


def _is_html(fetched: Fetched) -> bool:
    kind = fetched.headers.get("content-type", "text/html").lower()
    return "html" in kind or "xml" in kind


def _response(document: Fetched, body: bytes, final_url: URL, charset: str | None) -> Response:
    return Response(
        status=document.status,
        final_url=final_url,
        body=body,
        charset=charset,
        headers=document.headers,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


async def cdp_endpoint(url: str) -> str:
    """``url`` with its host name replaced by an address it resolves to.

    Chromium's DevTools server answers only requests whose Host header is an IP address or
    ``localhost`` (a defence against DNS rebinding), so ``http://chromium:9222`` from
    another container is refused as written; its address is not."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or host == "localhost" or _is_ip(host):
        return url
    loop = asyncio.get_running_loop()
    infos: list[Any] = await loop.getaddrinfo(
        host, parts.port or 9222, family=socket.AF_INET, type=socket.SOCK_STREAM
    )
    address = infos[0][4][0]
    netloc = f"{address}:{parts.port}" if parts.port else address
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
