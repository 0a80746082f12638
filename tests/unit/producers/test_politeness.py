"""Pure politeness parts: Retry-After, backoff, the conditional-GET memory, robots.txt rules."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

from producers.fetch.conditional import ConditionalCache, Remembered
from producers.politeness import HostLimiter, HostPolicy, backoff_seconds, parse_retry_after
from producers.robots import RobotsAnswer, RobotsCache, Verdict, robots_url

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
UA = "Pricewatch/0.1 (+https://github.com/pricewatch/pricewatch)"


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 25 Nov 2026 12:00:30 GMT", 30.0),
        ("Wednesday, 25-Nov-26 12:01:00 GMT", 60.0),  # RFC 850, obsolete but allowed
        ("Wed Nov 25 12:00:05 2026", 5.0),  # asctime
        ("Wed, 25 Nov 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_as_seconds_or_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_backoff_is_full_jitter_growing_exponentially_up_to_the_cap() -> None:
    rng = random.Random(5)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 10.0), (30, 10.0)]:
        waits = [backoff_seconds(attempt, 0.5, 10.0, rng) for _ in range(500)]
        assert min(waits) >= 0.0 and max(waits) <= ceiling
        assert max(waits) > ceiling * 0.9  # the whole range is used
        assert min(waits) < ceiling * 0.1


def _remembered(n: int) -> Remembered:
    return Remembered(etag=f'"{n}"', last_modified=None, final_url=f"u{n}", fields={"n": n})


def test_conditional_cache_drops_the_least_recently_used() -> None:
    cache = ConditionalCache(max_entries=2)
    cache.put("a", _remembered(1))
    cache.put("b", _remembered(2))
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", _remembered(3))

    assert cache.get("b") is None
    assert cache.get("a") == _remembered(1)
    assert len(cache) == 2
    cache.forget("a")
    assert cache.get("a") is None


def test_conditional_cache_of_size_zero_remembers_nothing() -> None:
    cache = ConditionalCache(max_entries=0)
    cache.put("a", _remembered(1))
    assert cache.get("a") is None


def test_validators_are_the_conditional_headers() -> None:
    both = Remembered(
        etag='W/"x"', last_modified="Wed, 25 Nov 2026 10:00:00 GMT", final_url="u", fields={}
    )
    assert both.validators() == {
        "If-None-Match": 'W/"x"',
        "If-Modified-Since": "Wed, 25 Nov 2026 10:00:00 GMT",
    }
    assert Remembered(None, None, "u", {}).validators() == {}


async def test_host_limiter_counts_in_flight_per_host_and_defers_on_request() -> None:
    limiter = HostLimiter(lambda host: HostPolicy(max_concurrent=2, min_interval=0.0))
    async with limiter.slot("a.example"), limiter.slot("a.example"):
        assert limiter.in_flight("a.example") == 2
        assert limiter.in_flight("b.example") == 0
        third = asyncio.create_task(_enter(limiter, "a.example"))
        await asyncio.sleep(0.05)
        assert not third.done()  # a third request to the same host waits ...
        async with limiter.slot("b.example"):  # ... another host does not
            pass
    await asyncio.wait_for(third, 1)

    loop = asyncio.get_running_loop()
    limiter.defer("a.example", 0.2)
    started = loop.time()
    async with limiter.slot("a.example"):
        assert loop.time() - started >= 0.15


async def _enter(limiter: HostLimiter, host: str) -> None:
    async with limiter.slot(host):
        pass


def test_slow_down_only_lengthens_the_interval() -> None:
    limiter = HostLimiter(lambda host: HostPolicy(max_concurrent=1, min_interval=2.0))
    limiter.slow_down("a.example", 1.0)
    limiter.slow_down("b.example", 5.0)
    assert limiter._state("a.example").policy.min_interval == 2.0
    assert limiter._state("b.example").policy.min_interval == 5.0


# --- robots.txt ---------------------------------------------------------------------------


class FakeSite:
    def __init__(self, answer: RobotsAnswer) -> None:
        self.answer = answer
        self.fetched: list[str] = []
        self.now = 0.0

    async def fetch(self, url: str) -> RobotsAnswer:
        self.fetched.append(url)
        await asyncio.sleep(0.01)  # let concurrent askers pile up
        return self.answer

    def cache(self, ttl: float = 100.0) -> RobotsCache:
        return RobotsCache(self.fetch, UA, ttl, clock=lambda: self.now)


ROBOTS = b"""
User-agent: *
Disallow: /checkout

User-agent: pricewatch
Disallow: /private/
Disallow: /*?sort=
Allow: /private/ok$
Crawl-delay: 3
"""


@pytest.mark.parametrize(
    ("path", "verdict"),
    [
        ("/products/1", Verdict.ALLOWED),
        ("/checkout", Verdict.ALLOWED),  # our group replaces "*"
        ("/private/thing", Verdict.DISALLOWED),
        ("/private/ok", Verdict.ALLOWED),  # the longer rule wins
        ("/list?sort=price", Verdict.DISALLOWED),  # wildcards
    ],
)
async def test_robots_rules_match_our_user_agent(path: str, verdict: Verdict) -> None:
    site = FakeSite(RobotsAnswer(200, ROBOTS))
    assert await site.cache().verdict(f"https://shop.example{path}") is verdict


async def test_robots_txt_is_fetched_once_per_origin_even_when_asked_at_once() -> None:
    site = FakeSite(RobotsAnswer(200, ROBOTS))
    cache = site.cache()
    urls = [f"https://shop.example/p/{i}" for i in range(10)] + ["http://shop.example:8080/p"]

    await asyncio.gather(*(cache.verdict(url) for url in urls))

    assert sorted(site.fetched) == [
        "http://shop.example:8080/robots.txt",
        "https://shop.example/robots.txt",
    ]
    assert await cache.crawl_delay(urls[0]) == 3.0


async def test_robots_txt_is_fetched_again_after_its_ttl() -> None:
    site = FakeSite(RobotsAnswer(200, ROBOTS))
    cache = site.cache(ttl=100.0)
    await cache.verdict("https://shop.example/")
    site.now = 99.0
    await cache.verdict("https://shop.example/")
    site.now = 101.0
    await cache.verdict("https://shop.example/")

    assert len(site.fetched) == 2


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (RobotsAnswer(404), Verdict.ALLOWED),
        (RobotsAnswer(403), Verdict.ALLOWED),  # RFC 9309: 4xx means no rules
        (RobotsAnswer(500), Verdict.UNAVAILABLE),
        (RobotsAnswer(None), Verdict.UNAVAILABLE),
        (RobotsAnswer(200, b"\xff\xfe garbage \x00"), Verdict.ALLOWED),
    ],
)
async def test_robots_status_decides_when_there_are_no_rules(
    answer: RobotsAnswer, verdict: Verdict
) -> None:
    assert await FakeSite(answer).cache().verdict("https://shop.example/private/x") is verdict


async def test_unavailable_robots_txt_is_asked_again_soon() -> None:
    site = FakeSite(RobotsAnswer(503))
    cache = site.cache(ttl=3600.0)
    await cache.verdict("https://shop.example/")
    site.now = 61.0
    site.answer = RobotsAnswer(404)

    assert await cache.verdict("https://shop.example/") is Verdict.ALLOWED
    assert len(site.fetched) == 2


def test_robots_url_is_per_origin() -> None:
    assert robots_url("HTTPS://Shop.Example:8443/a/b?c") == "https://shop.example:8443/robots.txt"
