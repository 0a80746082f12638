"""robots.txt: fetched once per origin, kept for a while, asked before every page fetch.

Follows RFC 9309 on what an answer means: a 2xx body holds the rules (parsed by Protego,
Scrapy's parser: wildcards, ``$``, longest match, ``Crawl-delay``); a 4xx means there are no
rules (everything allowed); a 5xx or no answer at all means "assume complete disallow" for
now, which is kept only briefly so a site that recovers is read again soon.

The HTTP part is the caller's (``fetch_robots``): the fetcher passes its own guarded,
rate-limited request function, so robots.txt goes through the URL guard and counts towards
the host's politeness limits like any page.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from protego import Protego

from producers.politeness import Clock

# An unreachable robots.txt is retried after this long at most (or the TTL, if shorter).
FAILURE_TTL_SECONDS = 60.0
MAX_ORIGINS = 10_000
MAX_ROBOTS_BYTES = 512 * 1024  # RFC 9309: parse at least 500 KiB


class Verdict(StrEnum):
    ALLOWED = "allowed"
    DISALLOWED = "disallowed"
    UNAVAILABLE = "unavailable"  # 5xx or no answer: complete disallow for now


@dataclass(frozen=True, slots=True)
class RobotsAnswer:
    """What fetching ``/robots.txt`` gave: an HTTP status (None: no response) and body."""

    status: int | None
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class _Rules:
    parser: Protego | None  # None: no rules (allow all), unless unavailable
    unavailable: bool
    expires_at: float


def robots_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}/robots.txt"


class RobotsCache:
    """Verdicts for URLs, from robots.txt files fetched at most once per origin and TTL
    (concurrent first requests to one origin share a single fetch)."""

    def __init__(
        self,
        fetch_robots: Callable[[str], Awaitable[RobotsAnswer]],
        user_agent: str,
        ttl_seconds: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self._fetch = fetch_robots
        self._user_agent = user_agent
        self._ttl = ttl_seconds
        self._clock = clock
        self._rules: OrderedDict[str, _Rules] = OrderedDict()
        self._pending: dict[str, asyncio.Future[_Rules]] = {}

    async def verdict(self, url: str) -> Verdict:
        rules = await self._rules_for(robots_url(url))
        if rules.unavailable:
            return Verdict.UNAVAILABLE
        if rules.parser is None or rules.parser.can_fetch(url, self._user_agent):
            return Verdict.ALLOWED
        return Verdict.DISALLOWED

    async def crawl_delay(self, url: str) -> float | None:
        rules = await self._rules_for(robots_url(url))
        if rules.parser is None:
            return None
        delay = rules.parser.crawl_delay(self._user_agent)
        return None if delay is None else float(delay)

    async def _rules_for(self, key: str) -> _Rules:
        cached = self._rules.get(key)
        if cached is not None and cached.expires_at > self._clock():
            return cached
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Rules] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            rules = self._interpret(await self._fetch(key))
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            del self._pending[key]
        future.set_result(rules)
        self._rules[key] = rules
        self._rules.move_to_end(key)
        while len(self._rules) > MAX_ORIGINS:
            self._rules.popitem(last=False)
        return rules

    def _interpret(self, answer: RobotsAnswer) -> _Rules:
        now = self._clock()
        status = answer.status
        if status is None or status >= 500:
            return _Rules(None, True, now + min(self._ttl, FAILURE_TTL_SECONDS))
        if 200 <= status < 300:
            text = answer.body[:MAX_ROBOTS_BYTES].decode("utf-8", errors="replace")
            return _Rules(Protego.parse(text), False, now + self._ttl)
        # 4xx (and anything else that is no error of theirs): no rules.
        return _Rules(None, False, now + self._ttl)
