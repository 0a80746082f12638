"""Retrying one fetch: transient failures (timeout, connection error, 5xx, 429) get another
attempt, up to ``fetch_max_attempts``, after exponential backoff with full jitter; a 429 or
503 with ``Retry-After`` holds back every request to the host that long instead, unless it
asks for longer than ``retry_after_max_seconds``: then the fetch ends (``RateLimited``).
A 429 or 5xx that is a bot check or captcha (``producers.fetch.blocked``) is final."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from producers import metrics
from producers.fetch.blocked import SCAN_CHARS, detect_block
from producers.fetch.redirects import Response
from producers.politeness import HostLimiter, backoff_seconds, parse_retry_after

RETRY_AFTER_STATUSES = frozenset({429, 503})
# Failures worth another attempt (5xx and 429 responses are judged apart).
TRANSIENT_ERRORS = (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)


class RateLimited(Exception):
    """A Retry-After longer than we are willing to wait."""


@dataclass
class Attempts:
    """What the attempts of one fetch cost, gathered as they go."""

    count: int = 0
    http_seconds: float = 0.0
    response_bytes: int = 0
    last_started_at: datetime | None = None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_base: float
    backoff_max: float
    retry_after_max: float
    timeout_seconds: float  # of one attempt
    rng: random.Random

    def backoff(self, attempt: int) -> float:
        return backoff_seconds(attempt, self.backoff_base, self.backoff_max, self.rng)


def retry_reason(status: int) -> str | None:
    """Why a response is worth another attempt (None: it is final)."""
    if status == 429 or 500 <= status < 600:
        return f"http_{status}"
    return None


def is_challenge(response: Response) -> bool:
    """A refusal that is a bot check or captcha (see ``producers.fetch.blocked``)."""
    if response.status < 400:
        return False
    body = response.body[:SCAN_CHARS].decode(response.charset or "utf-8", errors="replace")
    return detect_block(response.status, response.headers, body) is not None


async def get_with_retries(
    get: Callable[[], Awaitable[Response]],
    *,
    website: str,
    limiter: HostLimiter,
    policy: RetryPolicy,
    attempts: Attempts,
) -> Response:
    """``get()`` in the host's turn, again while it fails transiently. The response of the
    last attempt; raises what the last attempt raised."""
    while True:
        attempts.count += 1
        response: Response | None = None
        failure: Exception | None = None
        async with limiter.slot(website):
            attempts.last_started_at = datetime.now(UTC)
            started = time.perf_counter()
            try:
                async with asyncio.timeout(policy.timeout_seconds):
                    response = await get()
            except TRANSIENT_ERRORS as exc:
                failure = exc
            finally:
                attempts.http_seconds += time.perf_counter() - started
        if response is not None:
            attempts.response_bytes += len(response.body)
            reason = retry_reason(response.status)
            if reason is None or is_challenge(response):
                # A challenge answers every attempt alike: asking again only looks more
                # like the robot it suspects.
                return response
        else:
            assert failure is not None
            reason = "timeout" if isinstance(failure, TimeoutError) else "connection_error"
        wait: float | None = None
        if response is not None and response.status in RETRY_AFTER_STATUSES:
            wait = parse_retry_after(response.retry_after, datetime.now(UTC))
            if wait is not None and wait > policy.retry_after_max:
                raise RateLimited(f"Retry-After {wait:.0f}s")
        if attempts.count >= policy.max_attempts:
            if response is not None:
                return response
            assert failure is not None
            raise failure
        metrics.RETRIES.labels(reason=reason).inc()
        if response is not None and response.status in RETRY_AFTER_STATUSES:
            # The host told us (or we assume) it is overloaded: every request to it waits.
            if wait is None:
                wait = policy.backoff(attempts.count)
            limiter.defer(website, wait)
        else:
            await asyncio.sleep(policy.backoff(attempts.count))
